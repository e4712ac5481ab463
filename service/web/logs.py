"""PHI-safe request logs: the development server's access log line without the query string.

Search parameters carry medical record numbers and names (`patient_identifier=…|MRN-1001`,
`Patient?identifier=…`); the path and status are what an operator needs from an access log.
"""
from __future__ import annotations

import logging
import re

#: `GET /fhir/Patient?identifier=x|y HTTP/1.1` → `GET /fhir/Patient?… HTTP/1.1`, quoted or not
_QUERY = re.compile(r'("?[A-Z]+ [^" ?]*)\?[^" ]*( HTTP/[0-9.]+"?)')


def _clean(text: str) -> str:
    return _QUERY.sub(r"\1?…\2", text)


class DropQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) if isinstance(a, str) else a for a in record.args)
        record.msg = _clean(str(record.msg))
        return True


def install() -> None:
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropQueryStrings) for f in logger.filters):
        logger.addFilter(DropQueryStrings())
