"""Render the README's report picture: page 1 of the most severe incident's PDF report.

    .venv/bin/marketguard demo                                  # fills .marketguard/demo
    .venv/bin/python docs/reports/render_readme_image.py        # -> docs/reports/incident-report.png

Options: ``--data-dir DIR`` (default ``.marketguard/demo``), ``--page N`` (default 1),
``--dpi N`` (default 80). Needs poppler's ``pdftoppm``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from marketguard.app.reports import build_incident_report, render, sources_from_store
from marketguard.app.reports.demo import most_severe
from marketguard.config import load_settings
from marketguard.store import open_store

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write ``docs/reports/incident-report.png`` from the data directory's most severe incident."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(".marketguard/demo"))
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args()
    settings = load_settings(data_dir=args.data_dir)
    store = open_store(settings)
    try:
        sources = sources_from_store(store, settings)
        worst = most_severe(sources)
        if worst is None:
            raise SystemExit(f"no incidents in {args.data_dir}: run `marketguard demo` first")
        report = build_incident_report(sources, worst.id)
        assert report is not None
        pdf = render(report, "pdf")
    finally:
        store.close()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.pdf"
        path.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-png", "-r", str(args.dpi), "-f", str(args.page), "-l", str(args.page),
                        "-singlefile", str(path), str(HERE / "incident-report")], check=True)
    print(f"wrote {HERE / 'incident-report.png'} (incident {report.incident_id}, page {args.page})")


if __name__ == "__main__":
    main()
