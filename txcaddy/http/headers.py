"""HTTP header fields with Go's canonical names (``x-forwarded-for`` → ``X-Forwarded-For``).

Caddy's semantics depend on ``net/http``'s ``Header`` map: names are
canonicalised, values keep their order, and several values per name are
allowed. ``Headers`` does the same with an insertion-ordered dict.
"""

from __future__ import annotations

from collections.abc import Collection, Container, ItemsView, Iterable, Iterator

from txcaddy._go.textproto import canonical_mime_header_key as canonical_key

_raw_name_cache: dict[bytes, str] = {}


class Headers:
    """An ordered multi-map of header fields keyed by canonical name."""

    __slots__ = ("_fields",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: dict[str, list[str]] = {}
        for name, value in pairs:
            self.add(name, value)

    @classmethod
    def from_raw(cls, pairs: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Fields as read off the wire (latin-1, so every byte survives a round trip).

        The fast path for a whole header block: names are canonicalised through a
        cache keyed by the raw bytes, and the dict is filled without ``add``.
        """
        fields: dict[str, list[str]] = {}
        names = _raw_name_cache
        for raw_name, raw_value in pairs:
            name = names.get(raw_name)
            if name is None:
                name = canonical_key(raw_name.decode("latin-1"))
                if len(names) < 4096:
                    names[raw_name] = name
            values = fields.get(name)
            if values is None:
                fields[name] = [raw_value.decode("latin-1")]
            else:
                values.append(raw_value.decode("latin-1"))
        new = cls()
        new._fields = fields
        return new

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._fields.get(canonical_key(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._fields.get(canonical_key(name), ()))

    def joined(self, name: str, separator: str = ",") -> str:
        """All values of ``name`` joined, as Caddy's header placeholders show them."""
        return separator.join(self._fields.get(canonical_key(name), ()))

    def values_of(self, canonical_name: str) -> list[str] | None:
        """The live values of a field given by canonical name, or None (hot paths: no copy)."""
        return self._fields.get(canonical_name)

    def first(self, canonical_name: str) -> str | None:
        """The first value of a field given by canonical name, or None."""
        values = self._fields.get(canonical_name)
        return values[0] if values else None

    def set_canonical(self, canonical_name: str, value: str) -> None:
        """``set`` for a name already in canonical form."""
        self._fields[canonical_name] = [value]

    def merge(self, other: Headers) -> None:
        """Add every field of ``other`` (both keyed by canonical names: no re-canonicalising)."""
        fields = self._fields
        for name, values in other._fields.items():
            mine = fields.get(name)
            if mine is None:
                fields[name] = list(values)
            else:
                mine.extend(values)

    def add(self, name: str, value: str) -> None:
        self._fields.setdefault(canonical_key(name), []).append(value)

    def set(self, name: str, value: str) -> None:
        self._fields[canonical_key(name)] = [value]

    def set_all(self, name: str, values: list[str]) -> None:
        if values:
            self._fields[canonical_key(name)] = list(values)
        else:
            self._fields.pop(canonical_key(name), None)

    def delete(self, name: str) -> None:
        self._fields.pop(canonical_key(name), None)

    def delete_canonical(self, names: Collection[str]) -> None:
        """Delete several fields given by canonical name (no canonicalising: a hot path)."""
        fields = self._fields
        if len(fields) < len(names):  # e.g. a response's 5 fields against 10 hop-by-hop names
            for name in [name for name in fields if name in names]:
                del fields[name]
            return
        pop = fields.pop
        for name in names:
            pop(name, None)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_key(name) in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (name, value) pair, a name repeated for each of its values."""
        for name, values in list(self._fields.items()):
            for value in values:
                yield name, value

    def names(self) -> list[str]:
        return list(self._fields)

    def lists(self) -> ItemsView[str, list[str]]:
        """The live (name, values) pairs, for hot loops: read them, never change them."""
        return self._fields.items()

    def copy(self) -> Headers:
        new = Headers()
        new._fields = {name: list(values) for name, values in self._fields.items()}
        return new

    def view_without(self, names: Container[str]) -> Headers:
        """The fields whose canonical name is not in ``names``, sharing their value lists.

        No list is copied (a hot path): fields may be replaced (``set``, ``set_canonical``)
        or removed on the result, never appended to (``add``), which would change this
        object too; ``copy()`` the result first for that.
        """
        new = Headers()
        new._fields = {name: values for name, values in self._fields.items() if name not in names}
        return new

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"
