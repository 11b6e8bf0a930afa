"""The configuration reference, generated from the schema: ``python -m lfsgan.configref``.

``config/README.md`` has a hand-written part (which config file is which, how to run each) above
:data:`MARKER` and a generated part below it: one table per section of
``workflow/schemas/config.schema.yaml`` with every key, its type or allowed values, its default and
the schema's description. Rerun the command after changing the schema;
``python -m lfsgan.configref --check`` exits 1 when the committed reference is stale
(``tests/test_docs.py`` runs the same check).

Key paths: ``data.domains.<domain>.path`` is a key of every entry of a name -> object map,
``source.checkpoints[].seed`` a key of every item of a list, ``<train>.iterations`` a key of every
training block (``source.train``, ``task_train``, ``methods.<method>.train``), and
``methods.<method>.options.lambda`` a method option, listed per method ``kind``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from lfsgan.config import REPO_ROOT, load_schema

REFERENCE = REPO_ROOT / "config" / "README.md"
MARKER = "<!-- Generated from workflow/schemas/config.schema.yaml by `python -m lfsgan.configref`; edit the schema, not the text below. -->"
TRAIN_REF = "#/$defs/train"
TRAIN = "<train>"

Row = tuple[str, str, str, str]  # key path, type, default, description


def _placeholder(name: str) -> str:
    """``domains`` -> ``<domain>``: the name of one entry of a name -> object map."""
    return f"<{name[:-1] if name.endswith('s') else name}>"


def _type(node: dict, defs: dict) -> str:
    if "$ref" in node and node["$ref"] != TRAIN_REF:
        node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" if not isinstance(v, str) else f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    t = node.get("type", "object" if "properties" in node or node.get("$ref") == TRAIN_REF else "")
    t = " or ".join(t) if isinstance(t, list) else t
    if t == "array" and isinstance(node.get("items"), dict) and "type" in node["items"]:
        t = f"list of {node['items']['type']}"
    bounds = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            bounds.append(f"{sign} {node[key]}")
    return t + (f" ({', '.join(bounds)})" if bounds else "")


def _default(node: dict, defs: dict) -> str:
    if "$ref" in node and "default" not in node and node["$ref"] != TRAIN_REF:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    if "default" not in node:
        return ""
    return f"`{json.dumps(node['default'], ensure_ascii=False)}`"


def _description(node: dict, defs: dict) -> str:
    text = node.get("description")
    if text is None and "$ref" in node and node["$ref"] != TRAIN_REF:
        text = defs[node["$ref"].rsplit("/", 1)[1]].get("description")
    if node.get("$ref") == TRAIN_REF:
        text = (text + " " if text else "") + "A training block: its keys are listed under [Training blocks](#training-blocks)."
    return " ".join((text or "").split()).replace("|", "\\|")


def _rows(node: dict, path: str, defs: dict) -> Iterator[Row]:
    """Rows for ``node`` (at ``path``) and everything below it, depth first."""
    if path:
        yield path, _type(node, defs), _default(node, defs), _description(node, defs)
    if node.get("$ref") == TRAIN_REF:
        return  # documented once, in its own table
    for name, sub in node.get("properties", {}).items():
        yield from _rows(sub, f"{path}.{name}" if path else name, defs)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and ("properties" in extra or "additionalProperties" in extra):
        yield from (r for r in _rows(extra, f"{path}.{_placeholder(path.rsplit('.', 1)[-1])}", defs))
    items = node.get("items")
    if isinstance(items, dict) and "properties" in items:
        for name, sub in items["properties"].items():
            yield from _rows(sub, f"{path}[].{name}", defs)


def _option_tables(schema: dict) -> Iterator[tuple[str, list[Row]]]:
    """One table per method kind: the ``$defs/options_<kind>`` its entry takes (``options_base`` otherwise)."""
    defs = schema["$defs"]
    kinds = schema["properties"]["methods"]["additionalProperties"]["properties"]["kind"]["enum"]
    for kind in kinds:
        options = defs.get(f"options_{kind}", defs["options_base"])
        rows = [r for name, sub in options["properties"].items() for r in _rows(sub, f"methods.<method>.options.{name}", defs)]
        yield f"Options of `kind: {kind}`", rows


def tables(schema: dict | None = None) -> list[tuple[str, str, list[Row]]]:
    """(title, intro, rows) for every table of the reference, in order."""
    schema = schema or load_schema()
    defs = schema["$defs"]
    required = set(schema.get("required", []))
    out = []
    top = [(name, sub) for name, sub in schema["properties"].items()]
    simple = [r for name, sub in top if "properties" not in sub and "additionalProperties" not in sub for r in _rows(sub, name, defs)]
    out.append(("Top level", "Settings of the whole run. Required sections: "
                + ", ".join(f"`{k}`" for k in schema.get("required", [])) + ".", simple))
    for name, sub in top:
        if "properties" in sub or "additionalProperties" in sub:
            intro = _description(sub, defs) + (" Required." if name in required else "")
            out.append((f"`{name}`", intro.strip(), list(_rows(sub, name, defs))))
        if name == "methods":
            for title, rows in _option_tables(schema):
                out.append((title, "", rows))
    train = defs["train"]
    out.append(("Training blocks", "`source.train` (pretraining), `task_train` (every method's tasks) and "
                "`methods.<method>.train` (one method's overrides of `task_train`) take these keys; "
                "`<train>` stands for any of them. A key left out takes the training loop's default.",
                [r for name, sub in train["properties"].items() for r in _rows(sub, f"{TRAIN}.{name}", defs)]))
    return out


def render(schema: dict | None = None) -> str:
    """The generated part of the reference (everything after :data:`MARKER`)."""
    lines = [MARKER, "", "## Reference", ""]
    for title, intro, rows in tables(schema):
        lines += [f"### {title}", ""]
        if intro:
            lines += [intro, ""]
        lines += ["| key | type | default | what |", "| --- | --- | --- | --- |"]
        lines += [f"| `{k}` | {t} | {d} | {w} |" for k, t, d, w in rows]
        lines.append("")
    return "\n".join(lines)


def regenerate(path: Path = REFERENCE, schema: dict | None = None) -> str:
    """The reference file's text with its generated part rewritten from the schema."""
    text = path.read_text() if path.is_file() else ""
    head = text.split(MARKER, 1)[0].rstrip("\n")
    return (head + "\n\n" if head else "") + render(schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lfsgan.configref", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if config/README.md differs from the schema's reference")
    args = parser.parse_args(argv)
    want = regenerate()
    if args.check:
        if REFERENCE.read_text() != want:
            print(f"{REFERENCE} is stale: run `python -m lfsgan.configref`", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(want)
    print(f"wrote {REFERENCE.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
