"""Tables of the site that are generated, never copied: ``{llcuda-targets}`` renders the rows of targets.toml (read
through ``llcuda_factory.targets``, the one reader), with each CUDA row's driver floor."""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _table(header: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)
    head, body = nodes.thead(), nodes.tbody()
    for cells, section in [(header, head), *((r, body) for r in rows)]:
        row = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=text)
            row += entry
        section.append(row)
    group += head
    group += body
    return table


class TargetsTable(SphinxDirective):
    """The backend wheels llcuda builds, one row per target of targets.toml."""

    def run(self) -> list[nodes.Node]:
        from llcuda_factory.targets import TABLE, runtime_table

        self.env.note_dependency(str(TABLE))
        rows = []
        for t in runtime_table()["targets"]:
            archs = ", ".join(f"sm_{a['cc']}" + (f" + compute_{a['cc']}" if a["ptx"] else "") for a in t["archs"])
            rows.append(
                [
                    f"llcuda[{t['name']}]",
                    t["description"],
                    f"CUDA {t['cuda']}" if t["cuda"] else "none",
                    archs or "x86-64 CPU variants",
                    f">= {t['driver_floor']}" if t.get("driver_floor") else "none",
                ]
            )
        return [_table(["extra", "for", "toolkit", "code", "NVIDIA driver"], rows)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("llcuda-targets", TargetsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
