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


def test_the_reliability_plot_draws_the_diagonal_beside_the_curves():
    """`dvc plots show`'s reliability plot (.dvc/plots/reliability.json) as DVC fills it: a layer of the
    diagonal from (0, 0) to (1, 1) on the curves' own x and y fields (DVC fills anchors in values, not in keys)."""
    import json
    import subprocess
    import sys

    import vl_convert

    from helpers import ROOT

    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout
    spec = json.loads(shown)["data"]["Reliability (out-of-fold)"][0]["content"]
    diagonal, curves = spec["layer"]
    x, y = curves["encoding"]["x"]["field"], curves["encoding"]["y"]["field"]
    assert (x, y) == ("prob_pred", "prob_true") and {r[x] for r in spec["data"]["values"]} - {None}
    points = [{"diagonal": v["diagonal"]} for v in diagonal["data"]["values"]]
    made = {t["as"]: t["calculate"] for t in diagonal["transform"]}
    assert points == [{"diagonal": 0}, {"diagonal": 1}] and made == {x: "datum.diagonal", y: "datum.diagonal"}
    assert (diagonal["encoding"]["x"]["field"], diagonal["encoding"]["y"]["field"]) == (x, y)
    assert "datum.diagonal" in json.dumps(vl_convert.vegalite_to_vega(spec))  # Vega-Lite takes it as it is
