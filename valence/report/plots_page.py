"""The page `dvc plots show` writes, made to work offline: Vega, Vega-Lite and Vega-Embed inside it.

    python -m valence.report.plots_page          # the plots_page stage: writes plots/page_template.html

DVC's own page loads those three libraries from a CDN, so without internet every plot stays blank
(treeverse/dvc#5679). This template carries them inline, bundled by the vl-convert-python package, so
`dvc plots show` (and `dvc plots diff`) give a page that opens from disk anywhere. `.dvc/config` points DVC
at it (`plots.html_template`, relative to .dvc/), and `dvc repro` writes it like any other output.
"""
import sys
from pathlib import Path

from valence.config import PAGE_TEMPLATE
from valence.errors import PipelineError, run_stage
from valence.files import atomic_path

TEMPLATE = PAGE_TEMPLATE
VEGA_LITE = "5.20"  # DVC's plot templates are Vega-Lite 5 specifications
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")  # what DVC substitutes in the template

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">{refresh_tag}<title>DVC plots</title>
    <!-- Vega {vega}, Vega-Lite {vega_lite}, Vega-Embed {vega_embed}, inlined by valence.report.plots_page: no network needed -->
    <script type="text/javascript">
BUNDLE
    </script>
    <style>body { font-family: sans-serif; } table { border-spacing: 15px; }</style>
</head>
<body>{plot_divs}</body>
</html>
"""


def page(bundle, versions):
    """The template: ``bundle`` (JavaScript defining window.vegaEmbed) inline, DVC's placeholders kept."""
    clashes = [p for p in PLACEHOLDERS if p in bundle]
    if clashes:  # DVC would substitute inside the JavaScript
        raise PipelineError(f"the Vega bundle contains DVC's placeholder(s) {', '.join(clashes)}")
    head = PAGE.replace("{vega}", versions["vega"]).replace("{vega_lite}", versions["vega_lite"])
    head = head.replace("{vega_embed}", versions["vega_embed"])
    return head.replace("BUNDLE", bundle.replace("</script", "<\\/script"))  # the bundle must not end the tag


def build():
    """The page from the installed vl-convert-python."""
    try:
        import vl_convert
    except ImportError:
        raise PipelineError("vl-convert-python is not installed: pip install -r requirements.txt") from None
    versions = {"vega": vl_convert.get_vega_version(), "vega_lite": VEGA_LITE,
                "vega_embed": vl_convert.get_vega_embed_version()}
    return page(vl_convert.javascript_bundle(vl_version=VEGA_LITE), versions)


def write(path=TEMPLATE):
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(build(), encoding="utf-8")
    return path


def main():
    path = write(Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE)
    print(f"wrote {path}: `dvc plots show` now works offline")


if __name__ == "__main__":
    run_stage(main)
