"""The OpenAPI 3.1 document of every route, generated from the Structs, and a docs page
that renders it without any script or external asset (the engine's hosts often have
no internet access).

`POST /api/v1/tx` carries one envelope whose `input` depends on `infno`; the document
gives the envelope, the signing headers and every answer status, lists `input` as a
oneOf of the transactions' input Structs, and describes each transaction under
`x-yikatong-transactions` (infno -> name, input schema, output schema, whether it
changes state).
"""

from __future__ import annotations

import html
import sys
from collections.abc import Mapping
from typing import Any

import msgspec

from engine import __version__
from engine.txn.spec import TxSpec
from terminals import signing
from terminals.envelope import Answer, Envelope
from terminals.results import ResultCode

REF = "#/components/schemas/{name}"


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def build(registry: Mapping[str, TxSpec]) -> dict[str, Any]:
    specs = [registry[k] for k in sorted(registry)]
    types: list[Any] = [Envelope, Answer]
    for spec in specs:
        types += [spec.input_type, spec.output_type]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    envelope_ref, answer_ref = refs[0]["$ref"], refs[1]["$ref"]
    transactions: dict[str, Any] = {}
    input_refs = []
    for i, spec in enumerate(specs):
        in_ref, out_ref = refs[2 + 2 * i], refs[3 + 2 * i]
        input_refs.append(in_ref)
        transactions[spec.infno] = {
            "name": spec.name,
            "input": in_ref,
            "output": out_ref,
            "changes_state": spec.mutating,
            "description": " ".join(
                (sys.modules[spec.input_type.__module__].__doc__ or "").split()
            ),
        }
    env_schema = components[envelope_ref.rsplit("/", 1)[1]]
    env_schema["properties"]["input"] = {
        "description": "The transaction's input; its shape depends on infno (see x-yikatong-transactions).",
        "oneOf": input_refs,
    }
    headers = [
        {
            "name": name,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": desc,
        }
        for name, desc in (
            (signing.HEADER_TERMINAL, "terminal id"),
            (
                signing.HEADER_TIMESTAMP,
                "unix seconds when signed; within 300 s of the engine's clock",
            ),
            (signing.HEADER_NONCE, "16-64 characters [A-Za-z0-9_-], never reused"),
            (
                signing.HEADER_SIGNATURE,
                "hex HMAC-SHA256 of METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nhex(SHA-256(body))",
            ),
        )
    ]
    probe = {"200": {"description": "OK"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "yikatong settlement engine",
            "version": __version__,
            "description": "Social security card and medical settlement transactions, modelled on"
            " the national medical-insurance platform. Business outcomes are answered with HTTP 200"
            " and infcode -1; yk_code/yk_result carry the stable result code.",
        },
        "paths": {
            "/api/v1/tx": {
                "post": {
                    "summary": "Run one settlement-protocol transaction",
                    "parameters": headers,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": envelope_ref}}},
                    },
                    "responses": {
                        "200": _json(
                            "answer (infcode 0, or -1 with yk_result for a business refusal)",
                            answer_ref,
                        ),
                        "400": _json("body is not a JSON envelope", answer_ref),
                        "401": _json("signature, timestamp, nonce or terminal refused", answer_ref),
                        "503": _json(
                            "database unavailable or overloaded; retry after Retry-After",
                            answer_ref,
                        ),
                    },
                }
            },
            "/healthz": {"get": {"summary": "process alive", "responses": probe}},
            "/readyz": {
                "get": {
                    "summary": "database answers within its deadline",
                    "responses": {**probe, "503": {"description": "not ready; reason in body"}},
                }
            },
            "/metrics": {"get": {"summary": "Prometheus exposition", "responses": probe}},
            "/openapi.json": {"get": {"summary": "this document", "responses": probe}},
            "/docs": {"get": {"summary": "this document as a page", "responses": probe}},
        },
        "components": {"schemas": components},
        "x-yikatong-transactions": transactions,
        "x-yikatong-result-codes": {str(int(c)): c.name for c in ResultCode},
    }


def _fields_table(schema: dict[str, Any], components: dict[str, Any]) -> str:
    rows = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
        kind = prop.get("type", "")
        if ref:
            kind = ("array of " if "items" in prop else "") + ref.rsplit("/", 1)[1]
        limits = ", ".join(
            f"{k}={prop[k]}" for k in ("maxLength", "minLength", "pattern", "maxItems") if k in prop
        )
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(str(kind))}</td>"
            f"<td>{'yes' if name in required else ''}</td><td>{html.escape(limits)}</td></tr>"
        )
    return (
        "<table><tr><th>field</th><th>type</th><th>required</th><th>limits</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(doc: dict[str, Any]) -> str:
    components = doc["components"]["schemas"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>yikatong API</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}code{font-size:95%}</style>",
        f"<h1>{html.escape(doc['info']['title'])} {html.escape(doc['info']['version'])}</h1>",
        f"<p>{html.escape(doc['info']['description'])}</p><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>",
        "<h2>Routes</h2><ul>",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            parts.append(
                f"<li><code>{method.upper()} {html.escape(path)}</code> — {html.escape(op['summary'])}</li>"
            )
    parts.append("</ul><h2>Transactions</h2>")
    for infno, tx in doc["x-yikatong-transactions"].items():
        parts.append(
            f"<h3>{infno} {html.escape(tx['name'])}</h3><p>{html.escape(tx['description'])}</p>"
        )
        for label in ("input", "output"):
            name = tx[label]["$ref"].rsplit("/", 1)[1]
            parts.append(f"<h4>{label}: {html.escape(name)}</h4>")
            parts.append(_fields_table(components[name], components))
    parts.append("<h2>Schemas</h2>")
    for name, schema in sorted(components.items()):
        parts.append(
            f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>{_fields_table(schema, components)}"
        )
    parts.append("<h2>Result codes</h2><table><tr><th>yk_code</th><th>yk_result</th></tr>")
    for code, name in doc["x-yikatong-result-codes"].items():
        parts.append(f"<tr><td>{code}</td><td><code>{name}</code></td></tr>")
    parts.append("</table>")
    return "".join(parts)
