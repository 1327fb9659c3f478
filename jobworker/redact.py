"""Secrets out of text: mask the passwords of connection strings.

Every message, log line and ``repr`` that may show a queue URL or a libpq
connection string passes through :func:`mask_secrets` first, so a password
never reaches a terminal or a log, whatever form the caller wrote it in:

- the user-info of a URL: ``postgresql://user:secret@host/db``;
- a ``password`` parameter of a URL's query: ``...?password=secret``;
- a ``password`` keyword of a key/value connection string:
  ``host=db password=secret`` or ``password='a secret'``.

Keywords match in any case (``PASSWORD=``, ``Password=``).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MASK", "mask_secrets"]

#: What a masked secret reads as.
MASK: Final = "***"

# scheme://user:password@ : the password runs to the last '@' before the
# host part, so a password holding '@' or ':' is masked whole.
_USERINFO: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):[^/?#\s]*@")
# password=value in a query string (?password=...&) or a key/value string;
# a quoted value may hold spaces and escaped quotes. An unquoted value stops
# before a quote that ends the text or a word: the closing quote of a quoted
# URL (a repr in a message) stays, so masking twice changes nothing more.
_KEYWORD: Final = re.compile(
    r"(?P<head>(?:^|[?&;\s,(])password\s*=\s*)"
    r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^&;\s,)]*?(?=['\"]?(?:[&;\s,)]|$)))",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """Return *text* with every password of a URL or connection string replaced by ``***``.

    >>> mask_secrets("postgresql://app:s3cret@db.example/jobs?sslmode=require")
    'postgresql://app:***@db.example/jobs?sslmode=require'
    >>> mask_secrets("host=db PassWord='a secret' dbname=jobs")
    'host=db PassWord=*** dbname=jobs'
    >>> mask_secrets("postgresql:///jobs?host=db&password=s3cret")
    'postgresql:///jobs?host=db&password=***'
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _KEYWORD.sub(lambda m: f"{m['head']}{MASK}", text)
