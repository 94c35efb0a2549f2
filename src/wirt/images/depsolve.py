"""Choose a closed set of Debian packages from a Packages index: Depends, Pre-Depends, Provides.

Relationship syntax (Debian Policy §7.1, deb-control(5)): a field is a comma-separated list of
clauses that must all hold; a clause is `a | b | c`, any one alternative suffices; each
alternative is `name[:archqual] [(op version)]` with op one of `<< <= = >= >>`.
A virtual package named in `Provides` satisfies an unversioned relation on it, and a versioned
relation only when the `Provides` entry carries a version (`Provides: foo (= 1.0)`, §7.5).

The resolver is deliberately simple (like a minimal debootstrap, not apt's solver): a clause
already satisfied by a chosen package is skipped; otherwise the first alternative that a real
package satisfies is taken, else the first provider of a virtual alternative. Recommends and
Suggests are ignored. Conflicts and Breaks inside the result are reported, not solved.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from wirt.errors import WirtError
from wirt.images.archive import Package, PackageIndex, compare_versions
from wirt.images.deb822 import iter_paragraphs

_RELATION = re.compile(r"^\s*([a-z0-9][a-z0-9+.\-]*)(?::([a-z0-9\-]+))?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?")


@dataclass(frozen=True)
class Relation:
    """One alternative of a relationship clause: `name (op version)`."""

    name: str
    op: str = ""
    version: str = ""
    arch: str = ""  # the `:any` / `:native` qualifier, kept for messages

    def allows(self, version: str) -> bool:
        """True if `version` satisfies this relation's version constraint (or it has none)."""
        if not self.op:
            return True
        c = compare_versions(version, self.version)
        # Policy §7.1: `<` and `>` are obsolete spellings of `<=` and `>=`.
        return {"<<": c < 0, "<=": c <= 0, "<": c <= 0, "=": c == 0, ">=": c >= 0, ">": c >= 0, ">>": c > 0}[self.op]

    def __str__(self) -> str:
        return f"{self.name} ({self.op} {self.version})" if self.op else self.name


def parse_relations(text: str) -> list[list[Relation]]:
    """Parse a Depends-style field into clauses (AND) of alternatives (OR).

    Architecture restrictions `[...]` and build profiles `<...>` (only legal in source
    packages) are dropped.
    """
    clauses: list[list[Relation]] = []
    text = re.sub(r"\[[^\]]*\]|<[^<>=]*>", " ", text.replace("\n", " "))
    for raw_clause in text.split(","):
        alts = []
        for raw in raw_clause.split("|"):
            if not raw.strip():
                continue
            m = _RELATION.match(raw)
            if m is None:
                raise WirtError(f"cannot parse the package relation {raw.strip()!r} in the index")
            alts.append(Relation(m.group(1), m.group(3) or "", m.group(4) or "", m.group(2) or ""))
        if alts:
            clauses.append(alts)
    return clauses


@dataclass(frozen=True)
class Candidate:
    """A package as the resolver sees it: the archive record plus its relationship fields."""

    package: Package
    fields: dict[str, str] = field(repr=False, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def version(self) -> str:
        return self.package.version

    def relations(self, field_name: str) -> list[list[Relation]]:
        """Clauses of `Depends`, `Pre-Depends`, `Conflicts`, `Breaks` or `Provides`."""
        return parse_relations(self.fields.get(field_name, ""))

    def provides(self) -> list[Relation]:
        """The virtual packages this one provides (a `Provides` entry may only use `=`)."""
        return [alt for clause in self.relations("Provides") for alt in clause]

    def satisfies(self, rel: Relation) -> bool:
        """True if this package, by its name or a Provides entry, satisfies `rel` (Policy §7.5)."""
        if rel.name == self.name and rel.allows(self.version):
            return True
        for prov in self.provides():
            if prov.name != rel.name:
                continue
            if not rel.op:
                return True
            if prov.op == "=" and rel.allows(prov.version):
                return True
        return False


def candidate_from_fields(fields: dict[str, str]) -> Candidate | None:
    """A Candidate from one parsed Packages stanza, or None if it lacks what a download needs."""
    try:
        pkg = Package(
            name=fields["Package"],
            version=fields["Version"],
            architecture=fields.get("Architecture", ""),
            filename=fields["Filename"],
            size=int(fields["Size"]),
            sha256=fields["SHA256"].lower(),
            depends=fields.get("Depends", ""),
        )
    except (KeyError, ValueError):
        return None
    return Candidate(pkg, fields)


class Universe:
    """Every package of one Packages index, with lookups by name and by provided virtual name.

    Stanzas are parsed lazily; the Provides map is built once with a cheap text scan.
    """

    def __init__(self, index: PackageIndex) -> None:
        # The index keeps the raw stanzas per name; the resolver needs fields PackageIndex
        # does not parse (Pre-Depends, Provides, Priority), so it reads the same text.
        self._raw: dict[str, list[str]] = index._raw  # noqa: SLF001
        self._cache: dict[str, Candidate | None] = {}
        self._providers: dict[str, list[str]] | None = None

    @classmethod
    def from_text(cls, text: str) -> Universe:
        """A universe from the text of a Packages file (used by tests)."""
        return cls(PackageIndex(text))

    def __contains__(self, name: str) -> bool:
        return name in self._raw

    def latest(self, name: str) -> Candidate | None:
        """The highest version of the real package `name`."""
        if name not in self._cache:
            best: Candidate | None = None
            for stanza in self._raw.get(name, []):
                for fields in iter_paragraphs(stanza):
                    cand = candidate_from_fields(fields)
                    if cand and (best is None or compare_versions(cand.version, best.version) > 0):
                        best = cand
            self._cache[name] = best
        return self._cache[name]

    def version(self, name: str, version: str) -> Candidate | None:
        """The stanza of `name` at exactly `version`, if the index still carries it."""
        for stanza in self._raw.get(name, []):
            for fields in iter_paragraphs(stanza):
                cand = candidate_from_fields(fields)
                if cand and compare_versions(cand.version, version) == 0:
                    return cand
        return None

    def providers(self, virtual: str) -> list[Candidate]:
        """Real packages whose Provides names `virtual`, sorted by name for a stable choice."""
        if self._providers is None:
            self._providers = {}
            for name, stanzas in self._raw.items():
                for stanza in stanzas:
                    m = re.search(r"^Provides:(.*(?:\n[ \t].*)*)", stanza, re.M)
                    if m:
                        for clause in parse_relations(m.group(1)):
                            for alt in clause:
                                self._providers.setdefault(alt.name, []).append(name)
        out = []
        for name in sorted(set(self._providers.get(virtual, []))):
            cand = self.latest(name)
            if cand is not None:
                out.append(cand)
        return out

    def by_priority(self, priority: str) -> list[str]:
        """Names of packages whose latest stanza has `Priority: priority` (e.g. `required`)."""
        names = []
        for name, stanzas in self._raw.items():
            if any(re.search(rf"^Priority:\s*{re.escape(priority)}\s*$", s, re.M) for s in stanzas):
                cand = self.latest(name)
                if cand is not None and cand.fields.get("Priority") == priority:
                    names.append(name)
        return sorted(names)


def resolve(universe: Universe, roots: Iterable[str]) -> list[Candidate]:
    """The closure of `roots` under Pre-Depends and Depends, sorted by name.

    A root may be a virtual package (its first provider is taken). Cycles are harmless: a
    package is chosen once. An unsatisfiable clause is a WirtError naming the package.
    """
    chosen: dict[str, Candidate] = {}
    queue: deque[Candidate] = deque()

    def take(cand: Candidate) -> None:
        if cand.name not in chosen:
            chosen[cand.name] = cand
            queue.append(cand)

    for root in roots:
        cand = _pick(universe, [Relation(root)])
        if cand is None:
            raise WirtError(f"package {root!r} is not in the archive's index (check the name)")
        take(cand)
    while queue:
        cand = queue.popleft()
        # Pre-Depends first: dpkg needs them configured before unpacking (Policy §7.2); the
        # order matters only for choosing alternatives consistently.
        for clause in cand.relations("Pre-Depends") + cand.relations("Depends"):
            if any(other.satisfies(alt) for alt in clause for other in chosen.values()):
                continue
            pick = _pick(universe, clause)
            if pick is None:
                raise WirtError(
                    f"cannot satisfy '{' | '.join(map(str, clause))}' needed by {cand.name} {cand.version}: "
                    "the archive index is incomplete or inconsistent"
                )
            take(pick)
    return [chosen[name] for name in sorted(chosen)]


def _pick(universe: Universe, clause: list[Relation]) -> Candidate | None:
    """The package to install for a clause: first real match, else first provider match."""
    for alt in clause:
        real = universe.latest(alt.name)
        if real is not None and real.satisfies(alt):
            return real
    for alt in clause:
        for prov in universe.providers(alt.name):
            if prov.satisfies(alt):
                return prov
    return None


def conflicts(packages: Iterable[Candidate]) -> list[str]:
    """Human-readable Conflicts/Breaks violations inside `packages` (empty if none)."""
    pkgs = list(packages)
    problems = []
    for a in pkgs:
        for field_name in ("Conflicts", "Breaks"):
            for clause in a.relations(field_name):
                for rel in clause:
                    for b in pkgs:
                        # A package may conflict with a virtual name it provides itself (Policy §7.6.2).
                        if b is not a and b.satisfies(rel):
                            problems.append(f"{a.name} {field_name.lower()} {rel} ({b.name} {b.version})")
    return problems
