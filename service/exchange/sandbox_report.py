"""sandbox-check's report, as Inferno reports a test run: the server, each step's requests and outcome, a remedy.

Rendered three ways from one structure: a text table (the CLI), JSON (machines, the console) and one
self-contained HTML page (no script, nothing loaded from elsewhere) an integrator can hand to a hospital.
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: what to do about a failure, per class (the class is decided in sandbox.failure_class)
REMEDIES = {
    "auth": "The server refused our credentials: check the bearer token or the SMART backend-services client "
            "(its key, token URL and granted scopes, e.g. system/*.write) with the server's operator.",
    "unsupported": "The server does not offer this interaction or resource type: run with another --mode "
                   "(transaction, batch, conditional) or ask its operator to enable it; the CapabilityStatement "
                   "should have said so.",
    "validation": "The server refused the content: read its OperationOutcome below; it may require profiles, "
                  "terminology or elements that our profiles do not (run `ketamine-fhir validate` on the "
                  "record's resources, and compare with the server's implementation guide).",
    "integrity": "Referential integrity: a reference names a resource the server does not hold, or a resource "
                 "is still referred to by others; write what is referred to first, delete referrers first.",
    "conflict": "The resource changed on the server since it was read (409/412 on a versioned write): read it "
                "again and retry.",
    "server": "The server failed (5xx) or is busy (429): retry later; if it persists, send this report to the "
              "server's operator.",
    "transport": "No usable answer from the server: check the base URL, that the server is up, the network "
                 "path and TLS.",
    "mismatch": "The server stored something other than what was sent (or found other data): compare the "
                "differences listed with what the server documents about altering resources.",
}


@dataclass
class Call:
    """One HTTP exchange made during a step."""

    method: str
    url: str
    status: int | None
    ms: float


@dataclass
class Step:
    name: str
    status: str = "pending"     # pending | running | pass | fail | skip
    seconds: float = 0.0
    message: str = ""
    calls: list[Call] = field(default_factory=list)
    outcome: dict[str, Any] | None = None    # the server's OperationOutcome, when it sent one
    failure: str | None = None               # a key of REMEDIES

    @property
    def remedy(self) -> str:
        return REMEDIES.get(self.failure or "", "")


@dataclass
class Report:
    base_url: str
    mode: str
    cleanup: bool
    started_at: str              # ISO 8601, UTC
    run_id: str
    our_version: str
    software: str = ""           # the server's CapabilityStatement.software, name and version
    fhir_version: str = ""
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No step failed and the records went through (a server offering nothing passes nothing)."""
        return (not any(s.status == "fail" for s in self.steps)
                and any(s.status == "pass" and s.name.startswith("push") for s in self.steps))

    @property
    def verdict(self) -> str:
        counts = {k: sum(s.status == k for s in self.steps) for k in ("pass", "fail", "skip")}
        return (f"{'PASSED' if self.passed else 'FAILED'}: {counts['pass']} passed, {counts['fail']} failed, "
                f"{counts['skip']} skipped")

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["passed"] = self.passed
        for step, data in zip(self.steps, found["steps"], strict=True):
            data["remedy"] = step.remedy
        return found

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def table(self) -> str:
        width = max(len(s.name) for s in self.steps)
        lines = [f"sandbox-check {self.our_version} · {self.base_url} · {self.software or 'software unknown'} · "
                 f"FHIR {self.fhir_version or '?'} · mode {self.mode} · {self.started_at} · run {self.run_id}", "",
                 f"{'step':<{width}}  result  seconds  message"]
        for s in self.steps:
            lines.append(f"{s.name:<{width}}  {s.status.upper():<6}  {s.seconds:>7.2f}  {s.message}")
            if s.status == "fail" and s.remedy:
                lines.append(f"{'':<{width}}  remedy: {s.remedy}")
        return "\n".join([*lines, "", self.verdict])

    def as_html(self) -> str:
        facts = [("Server", self.base_url), ("Software", self.software or "not stated"),
                 ("FHIR version", self.fhir_version or "not stated"), ("Date (UTC)", self.started_at),
                 ("Mode", self.mode), ("Cleanup", "yes" if self.cleanup else "no"), ("Run id", self.run_id),
                 ("sandbox-check", f"Ketamine FHIR Bridge {self.our_version}")]
        head = "".join(f"<tr><th scope=\"row\">{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
        body = "".join(_step_html(s) for s in self.steps)
        return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sandbox-check report</title>"
                f"<style>{_CSS}</style></head><body><h1>sandbox-check report</h1>"
                f"<table class=\"facts\"><tbody>{head}</tbody></table>"
                f"<p class=\"verdict {'pass' if self.passed else 'fail'}\">{_e(self.verdict)}</p>"
                f"{body}</body></html>")


_CSS = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}table{border-collapse:collapse;"
        "margin:.4rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}"
        ".facts th{background:#f3f3f3}.verdict{font-size:1.2rem;font-weight:bold}.pass{color:#1b7f3b}"
        ".fail{color:#b3261e}.skip{color:#6b6b6b}section{border-top:1px solid #ddd;padding:.4rem 0}"
        "h2{font-size:1.05rem;margin:.3rem 0}code{font-size:.85rem;word-break:break-all}"
        ".remedy{background:#fff4e5;padding:.4rem .6rem;border-left:4px solid #e69500}")


def _e(value: object) -> str:
    return html.escape(str(value))


def _step_html(step: Step) -> str:
    calls = "".join(f"<tr><td>{_e(c.method)}</td><td><code>{_e(c.url)}</code></td>"
                    f"<td>{_e(c.status if c.status is not None else 'no answer')}</td><td>{c.ms:.0f}</td></tr>"
                    for c in step.calls)
    requests = ("<table class=\"calls\"><thead><tr><th>Method</th><th>URL</th><th>Status</th><th>ms</th></tr>"
                f"</thead><tbody>{calls}</tbody></table>") if calls else ""
    remedy = f"<p class=\"remedy\"><strong>Remedy:</strong> {_e(step.remedy)}</p>" if step.status == "fail" \
        and step.remedy else ""
    return (f"<section id=\"step-{_e(step.name.replace(' ', '-'))}\"><h2><span class=\"{_e(step.status)}\">"
            f"{_e(step.status.upper())}</span> {_e(step.name)} <small>({step.seconds:.2f} s)</small></h2>"
            f"<p>{_e(step.message)}</p>{remedy}{outcome_html(step.outcome)}{requests}</section>")


def outcome_html(outcome: dict[str, Any] | None) -> str:
    """The server's OperationOutcome as a table of its issues."""
    if not outcome:
        return ""
    rows = "".join(
        f"<tr><td>{_e(i.get('severity', ''))}</td><td>{_e(i.get('code', ''))}</td>"
        f"<td>{_e((i.get('details') or {}).get('text') or i.get('diagnostics') or '')}</td>"
        f"<td>{_e(', '.join(i.get('expression') or i.get('location') or []))}</td></tr>"
        for i in outcome.get("issue") or [] if isinstance(i, dict))
    return ("<table class=\"outcome\"><caption>The server's OperationOutcome</caption><thead><tr><th>Severity</th>"
            f"<th>Code</th><th>Details</th><th>Where</th></tr></thead><tbody>{rows}</tbody></table>")
