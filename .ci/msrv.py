#!/usr/bin/env python3
"""Checks Cargo.toml's rust-version against Cargo.lock: it must equal the highest rust-version any
locked dependency declares, so the stated minimum is the true one (no other toolchain can be had
here to build with it)."""
import json
import re
import subprocess
import sys

meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked", "--offline"],
    check=True, capture_output=True, text=True).stdout)
ours = next(p for p in meta["packages"] if p["name"] == "dcrship")
resolved = {n["id"] for n in meta["resolve"]["nodes"]}


def key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v))[:3] + (0,) * (3 - len(re.findall(r"\d+", v)[:3]))


need = max(((key(p["rust_version"]), p["name"], p["rust_version"]) for p in meta["packages"]
            if p["id"] in resolved and p["id"] != ours["id"] and p.get("rust_version")),
           default=((0, 0, 0), "-", "0"))
stated = ours.get("rust_version") or "0"
if key(stated) != need[0]:
    sys.exit(f"Cargo.toml says rust-version = {stated}, but {need[1]} in Cargo.lock needs {need[2]}: "
             "make rust-version (and README / docs/install.md) say the true minimum")
print(f"rust-version {stated}: the highest of the locked dependencies ({need[1]})")
