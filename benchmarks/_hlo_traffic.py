"""Modeled memory traffic of a compiled XLA program, op by op, from its optimized HLO text.

Each op that runs as a kernel (a fusion, a library call, a copy, a collective...) is charged the
bytes of the operands it reads and of the results it writes, from the shapes in the HLO: what a
kernel moves through HBM if every operand is read once and every result written once, nothing
served from cache. Three refinements keep the count honest for decode loops:
- a fusion parameter used only through slices (dynamic-slice, slice, gather) is charged the
  slices' bytes, not the whole buffer's;
- an in-place update (a dynamic-update-slice or scatter into a buffer the op receives, fused or
  not) is charged the update's bytes, not a rewrite of the buffer;
- a while loop's body is counted `known_trip_count` times (XLA writes it into the loop's backend
  config); a conditional is counted by its cheapest branch (which branch runs is data), and
  `conditionals` lists each one's cheapest and dearest branch.
Bitcasts, tuples, parameters and constants cost nothing.

This is a model of the traffic a program asks for, not a measurement of a device: it shows the
passes over memory a fusion decision adds or saves (a state read twice, a buffer copied each
step), which a roofline built from the bytes a step must move cannot see.
"""
from __future__ import annotations

import collections
import dataclasses
import re

_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
          "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
_INSTRUCTION = re.compile(
    r"^\s*(?P<root>ROOT\s+)?%(?P<name>[\w.\-]+)\s*=\s*(?P<type>\(.*?\)|\w+\[[\d,]*\](?:\{[^}]*\})?)"
    r"\s+(?P<op>[\w\-]+)\((?P<operands>[^)]*)\)(?P<attrs>.*)$")
_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all",
         "partition-id", "replica-id", "opt-barrier", "add-dependency"}
_SLICES = {"dynamic-slice", "slice", "gather"}
_IN_PLACE = {"dynamic-update-slice": 1, "scatter": 2}   # op -> operand index of the update


def array_bytes(type_text: str, skip_workspace: bool = False) -> int:
    """Bytes of every array in an HLO type (a tuple sums its elements). `skip_workspace` drops
    s8 arrays, the scratch workspace a library call (cuBLAS) returns beside its result."""
    total = 0
    for dtype, dims in _ARRAY.findall(type_text):
        if skip_workspace and dtype == "s8":
            continue
        count = 1
        for d in filter(None, dims.split(",")):
            count *= int(d)
        total += count * _BYTES[dtype]
    return total


@dataclasses.dataclass
class Instruction:
    name: str
    type: str
    op: str
    operands: list[str]
    args: str            # the text between the parentheses (a parameter's index)
    attrs: str
    is_root: bool

    def attr(self, pattern: str) -> str | None:
        match = re.search(pattern, self.attrs)
        return match.group(1) if match else None

    @property
    def op_name(self) -> str:
        """The JAX-level name XLA kept in the metadata (e.g. ".../while/body/.../dot_general")."""
        return self.attr(r'op_name="([^"]*)"') or ""


def parse_module(text: str) -> tuple[dict[str, list[Instruction]], str]:
    """({computation name: its instructions}, the entry computation's name)."""
    computations, entry, current = {}, None, None
    for line in text.splitlines():
        header = re.match(r"^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$", line)
        if header:
            current = header.group(2)
            computations[current] = []
            if header.group(1):
                entry = current
            continue
        if line.startswith("}"):
            current = None
            continue
        match = _INSTRUCTION.match(line) if current else None
        if match:
            computations[current].append(Instruction(
                name=match["name"], type=match["type"], op=match["op"],
                operands=re.findall(r"%([\w.\-]+)", match["operands"]), args=match["operands"],
                attrs=match["attrs"], is_root=bool(match["root"])))
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    return computations, entry


@dataclasses.dataclass
class Charge:
    """One kernel's modeled traffic, already multiplied by the trips of its enclosing loops."""
    name: str
    kind: str            # "fusion:kLoop", "custom-call:__cublas$gemm", "copy", ...
    type: str            # its result type
    op_name: str
    read: int
    written: int
    trips: int
    in_conditional: bool = False

    @property
    def total(self) -> int:
        return self.read + self.written


class TrafficModel:
    def __init__(self, hlo_text: str):
        self.computations, self.entry = parse_module(hlo_text)
        self.types = {i.name: i.type for body in self.computations.values() for i in body}
        # (name, cheapest branch's bytes, dearest branch's bytes) of every conditional walked.
        self.conditionals: list[tuple[str, int, int]] = []

    def charges(self) -> list[Charge]:
        self.conditionals = []
        return self._walk(self.entry, 1, False)

    def _walk(self, computation: str, trips: int, in_conditional: bool) -> list[Charge]:
        out = []
        for inst in self.computations[computation]:
            if inst.op in _FREE:
                continue
            if inst.op == "while":
                body = inst.attr(r"body=%([\w.\-]+)")
                count = inst.attr(r'"known_trip_count":\{"n":"(\d+)"')
                out += self._walk(body, trips * int(count or 1), in_conditional)
                continue
            if inst.op == "conditional":
                listed = inst.attr(r"branch_computations=\{([^}]*)\}") or ""
                branches = (re.findall(r"%([\w.\-]+)", listed)
                            or [inst.attr(r"true_computation=%([\w.\-]+)"),
                                inst.attr(r"false_computation=%([\w.\-]+)")])
                costs = sorted((self._walk(b, trips, True) for b in branches if b),
                               key=lambda c: sum(x.total for x in c))
                if costs:
                    out += costs[0]
                    self.conditionals.append((inst.name, sum(x.total for x in costs[0]),
                                              sum(x.total for x in costs[-1])))
                continue
            read, written, kind = self._charge(inst)
            out.append(Charge(inst.name, kind, inst.type, inst.op_name, read * trips,
                              written * trips, trips, in_conditional))
        return out

    def _charge(self, inst: Instruction) -> tuple[int, int, str]:
        operand_types = [self.types.get(o, "") for o in inst.operands]
        if inst.op == "fusion":
            read, written = self._fusion(inst.attr(r"calls=%([\w.\-]+)"), operand_types)
            kind = inst.attr(r"kind=(\w+)") or "?"
            custom = inst.attr(r'"kind":"([\w$]+)"')
            return read, written, f"fusion:{kind}" + (f":{custom}" if custom else "")
        if inst.op in _IN_PLACE:
            update = array_bytes(operand_types[_IN_PLACE[inst.op]])
            return update, update, inst.op
        if inst.op in _SLICES:
            return array_bytes(inst.type), array_bytes(inst.type), inst.op
        read = sum(array_bytes(t) for t in operand_types)
        if inst.op == "custom-call":
            target = inst.attr(r'custom_call_target="([^"]+)"') or "?"
            return read, array_bytes(inst.type, skip_workspace=True), f"custom-call:{target}"
        return read, array_bytes(inst.type), inst.op

    def _fusion(self, computation: str, operand_types: list[str]) -> tuple[int, int]:
        body = self.computations[computation]
        by_name = {i.name: i for i in body}
        params = {i.name: int(i.args) for i in body if i.op == "parameter"}
        users = collections.defaultdict(list)
        for i in body:
            for position, operand in enumerate(i.operands):
                users[operand].append((i, position))

        def through_bitcasts(name):
            while by_name[name].op == "bitcast":
                name = by_name[name].operands[0]
            return name

        def real_users(name):
            found = []
            for user, position in users[name]:
                found += real_users(user.name) if user.op == "bitcast" else [(user, position)]
            return found

        root = next(i for i in body if i.is_root)
        outputs = [by_name[o] for o in root.operands] if root.op == "tuple" else [root]
        updated_in_place, written = set(), 0
        for out in outputs:
            producer = by_name[through_bitcasts(out.name)]
            if producer.op in _IN_PLACE:
                target = through_bitcasts(producer.operands[0])
                if by_name[target].op == "parameter":
                    updated_in_place.add(target)
                    written += array_bytes(by_name[producer.operands[_IN_PLACE[producer.op]]].type)
                    continue
            written += array_bytes(out.type)
        read = 0
        for name, index in params.items():
            full = array_bytes(operand_types[index]) if index < len(operand_types) else 0
            uses = [(u, p) for u, p in real_users(name)
                    if not (name in updated_in_place and u.op in _IN_PLACE and p == 0)]
            if uses and all(u.op in _SLICES and p == 0 for u, p in uses):
                read += min(full, sum(array_bytes(u.type) for u, _ in uses))
            elif uses:
                read += full
        return read, written
