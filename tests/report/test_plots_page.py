import pytest

from valence.errors import PipelineError
from valence.report import plots_page

VERSIONS = {"vega": "6.2.0", "vega_lite": "5.20", "vega_embed": "7.0.2"}


def test_page_inlines_the_bundle_and_keeps_dvcs_placeholders():
    html = plots_page.page('window.vegaEmbed = () => "</script>";', VERSIONS)
    assert "{plot_divs}" in html and "{refresh_tag}" in html
    assert "{scripts}" not in html  # where DVC would put its CDN <script src=…> tags
    assert 'window.vegaEmbed = () => "<\\/script>";' in html  # cannot close the inline script early
    assert html.count("</script>") == 1 and "src=" not in html
    assert "Vega 6.2.0, Vega-Lite 5.20, Vega-Embed 7.0.2" in html


def test_a_bundle_holding_a_placeholder_is_refused():
    with pytest.raises(PipelineError, match=r"placeholder\(s\) \{plot_divs\}"):
        plots_page.page("var s = '{plot_divs}';", VERSIONS)


def test_the_installed_bundle_defines_vega_embed_without_network_urls(tmp_path):
    path = plots_page.write(tmp_path / "page.html")
    html = path.read_text(encoding="utf-8")
    assert "window.vegaEmbed=" in html.replace(" ", "") and "{plot_divs}" in html
    assert "cdn.jsdelivr" not in html and "<script src" not in html
