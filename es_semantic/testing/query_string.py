"""The Lucene query-string syntax subset the test server parses (``query_string``, URI ``q=``).

Parsed: terms and ``"phrases"`` (each analysed like a ``match``/``match_phrase``), ``field:value``
(``field`` may hold ``*``), ``field:*`` and ``_exists_:field``, a trailing ``*`` (prefix), ``^boost``,
``( )`` groups, ``+``/``-``/``!``/``NOT`` and ``AND``/``OR``/``&&``/``||`` combined as Lucene's
classic ``QueryParser.addClause`` does, backslash escapes. Ranges, fuzzy ``~``, regular expressions and
inner wildcards are refused with ``unsupported_by_test_server``: the answer would be wrong otherwise.
The result is query DSL the engine runs (``bool``, ``match``, ``multi_match``, ``exists``, ``prefix``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from es_semantic.testing.errors import EsError, unsupported

_SPECIAL = set('+-!():^[]"{}~*?\\/ \t\r\n')
_MUST, _SHOULD, _MUST_NOT = "must", "should", "must_not"


@dataclass
class _Clause:
    occur: str
    query: dict[str, Any]


def parse(text: str, *, fields: list[str], default_operator: str = "or", lenient: bool = False,
          normalize: Callable[[str, str], str] | None = None) -> dict[str, Any]:
    """The query DSL for ``text``; bare terms go to ``fields`` (``["*"]``: every text/keyword field).
    ``lenient`` ignores values a field cannot parse; ``normalize(field, term)`` is the field's
    normaliser, applied to prefix terms (which are not analysed)."""
    parser = _Parser(text, fields, str(default_operator).lower() == "and")
    parser.lenient = lenient
    parser.normalize = normalize or (lambda _field, term: term)
    query = parser.query()
    if parser.pos < len(text):
        raise _syntax(text, f"Encountered \" \"{text[parser.pos]}\" \" at column {parser.pos + 1}")
    return query


def _syntax(text: str, detail: str) -> EsError:
    return EsError(400, "query_shard_exception", f"Failed to parse query [{text}]",
                   caused_by={"type": "parse_exception", "reason": f"Cannot parse '{text}': {detail}"})


class _Parser:
    def __init__(self, text: str, fields: list[str], and_default: bool) -> None:
        self.text = text
        self.pos = 0
        self.fields = fields
        self.and_default = and_default
        self.lenient = False
        self.normalize: Callable[[str, str], str] = lambda _field, term: term

    # -- lexing ----------------------------------------------------------------------------------

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek_word(self, *words: str) -> str | None:
        self._skip()
        for word in words:
            end = self.pos + len(word)
            if self.text.startswith(word, self.pos) and (
                    word in ("&&", "||") or end >= len(self.text) or self.text[end].isspace() or self.text[end] in "()"):
                return word
        return None

    def _term(self) -> tuple[str, bool]:
        """A bare term (escapes resolved) and whether it ended in an unescaped ``*``."""
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch in "+-!" and out:  # term characters, except at the start
                out.append(ch)
                self.pos += 1
                continue
            if ch in "*?":
                rest_starts_term = self.pos + 1 < len(self.text) and self.text[self.pos + 1] not in _SPECIAL
                if ch == "*" and out and not rest_starts_term:
                    self.pos += 1
                    return "".join(out), True
                raise unsupported(f"the wildcard [{ch}] inside a query_string term")
            if ch in _SPECIAL:
                break
            out.append(ch)
            self.pos += 1
        return "".join(out), False

    # -- grammar ---------------------------------------------------------------------------------

    def query(self) -> dict[str, Any]:
        clauses: list[_Clause] = []
        conj = None
        while True:
            self._skip()
            if self.pos >= len(self.text) or self.text[self.pos] == ")":
                break
            if clauses:
                word = self._peek_word("AND", "OR", "&&", "||")
                if word:
                    self.pos += len(word)
                    conj = "and" if word in ("AND", "&&") else "or"
                    self._skip()
            modifier = self._modifier()
            self._add(clauses, conj, modifier, self._clause())
            conj = None
        if not clauses:
            return {"match_none": {}}
        if len(clauses) == 1 and clauses[0].occur != _MUST_NOT:
            return clauses[0].query
        body: dict[str, list[dict[str, Any]]] = {}
        for clause in clauses:
            body.setdefault(clause.occur, []).append(clause.query)
        return {"bool": body}

    def _modifier(self) -> str | None:
        if self.pos < len(self.text) and self.text[self.pos] in "+-!":
            self.pos += 1
            return "+" if self.text[self.pos - 1] == "+" else "-"
        if self._peek_word("NOT"):
            self.pos += 3
            return "-"
        return None

    def _add(self, clauses: list[_Clause], conj: str | None, modifier: str | None, query: dict[str, Any]) -> None:
        # Lucene's QueryParserBase.addClause.
        if clauses and conj == "and" and clauses[-1].occur != _MUST_NOT:
            clauses[-1].occur = _MUST
        if clauses and self.and_default and conj == "or" and clauses[-1].occur != _MUST_NOT:
            clauses[-1].occur = _SHOULD
        prohibited = modifier == "-"
        if self.and_default:
            required = not prohibited and conj != "or"
        else:
            required = modifier == "+" or (conj == "and" and not prohibited)
        occur = _MUST_NOT if prohibited else _MUST if required else _SHOULD
        clauses.append(_Clause(occur, query))

    def _clause(self, field: str | None = None) -> dict[str, Any]:
        self._skip()
        if self.pos >= len(self.text):
            raise _syntax(self.text, "Encountered \"<EOF>\"")
        ch = self.text[self.pos]
        if ch == "(":
            self.pos += 1
            saved = self.fields
            if field is not None:
                self.fields = [field]
            inner = self.query()
            self.fields = saved
            self._expect(")")
            return self._boosted(inner)
        if ch == '"':
            return self._boosted(self._phrase(field))
        if ch in "[{/~<>=":
            raise unsupported(f"[{ch}] (ranges, regular expressions, fuzzy or proximity) in a query_string")
        if ch == "*" and field is None:
            self.pos += 1
            if self.text.startswith(":*", self.pos):
                self.pos += 2
            return self._boosted({"match_all": {}})
        word, prefix = self._term()
        if not word:
            raise _syntax(self.text, f"Encountered \" \"{ch}\" \" at column {self.pos + 1}")
        if field is None and self.pos < len(self.text) and self.text[self.pos] == ":":
            self.pos += 1
            return self._field_clause(word)
        return self._boosted(self._term_query(field, word, prefix))

    def _field_clause(self, field: str) -> dict[str, Any]:
        if field == "_exists_":
            name, _ = self._term()
            return self._boosted({"exists": {"field": name}})
        if self.text.startswith("*", self.pos) and (self.pos + 1 >= len(self.text) or
                                                    self.text[self.pos + 1] in " \t\r\n)^"):
            self.pos += 1
            return self._boosted({"exists": {"field": field}})
        if self.pos < len(self.text) and self.text[self.pos] in "><=":
            raise unsupported("range comparisons (field:>value) in a query_string")
        return self._clause(field)

    def _expect(self, ch: str) -> None:
        self._skip()
        if self.pos >= len(self.text) or self.text[self.pos] != ch:
            raise _syntax(self.text, f"Encountered \"<EOF>\" while expecting \"{ch}\"")
        self.pos += 1

    def _phrase(self, field: str | None) -> dict[str, Any]:
        self.pos += 1
        out = []
        while self.pos < len(self.text) and self.text[self.pos] != '"':
            if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
            out.append(self.text[self.pos])
            self.pos += 1
        if self.pos >= len(self.text):
            raise _syntax(self.text, "Lexical error: unterminated phrase")
        self.pos += 1
        if self.pos < len(self.text) and self.text[self.pos] == "~":
            raise unsupported("phrase slop (\"...\"~N) in a query_string")
        text = "".join(out)
        if field is not None and "*" not in field:
            return {"match_phrase": {field: {"query": text}}}
        return {"multi_match": {"query": text, "fields": [field] if field else self.fields, "type": "phrase",
                                "lenient": True}}

    def _term_query(self, field: str | None, word: str, prefix: bool) -> dict[str, Any]:
        if self.pos < len(self.text) and self.text[self.pos] == "~":
            raise unsupported("fuzzy terms (term~) in a query_string")
        fields = [field] if field else self.fields
        if prefix:
            if len(fields) != 1 or "*" in fields[0]:
                raise unsupported("a prefix term (term*) over several fields in a query_string")
            return {"prefix": {fields[0]: {"value": self.normalize(fields[0], word)}}}
        operator = "and" if self.and_default else "or"
        if field is not None and "*" not in field:
            return {"match": {field: {"query": word, "operator": operator, "lenient": self.lenient}}}
        return {"multi_match": {"query": word, "fields": fields, "operator": operator, "lenient": True}}

    def _boosted(self, query: dict[str, Any]) -> dict[str, Any]:
        if self.pos >= len(self.text) or self.text[self.pos] != "^":
            return query
        self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isdigit() or self.text[self.pos] == "."):
            self.pos += 1
        try:
            boost = float(self.text[start:self.pos])
        except ValueError:
            raise _syntax(self.text, f"Encountered \"^\" at column {start}") from None
        return {"bool": {"must": [query], "boost": boost}}
