#!/usr/bin/env python3
"""Writes the flatpak-builder sources that let `cargo --offline` build Vireo.

flatpak-builder builds without network, so every crate in Cargo.lock is
listed as a checksummed download that flatpak-builder fetches beforehand:

- a registry crate becomes an `archive` source (the .crate file from
  static.crates.io, its sha256 the checksum Cargo.lock records) unpacked into
  cargo/vendor/NAME-VERSION, plus the `.cargo-checksum.json` cargo demands of
  a vendored crate (the package checksum; no per-file sums, which cargo then
  does not check);
- a git dependency becomes a `git` source pinned to the commit Cargo.lock
  records (the crate must sit at the root of its repository; untried, as
  Vireo has no git dependency today);
- a `cargo/config.toml` replaces crates.io (and each git repository) with
  the vendored directory. The manifest sets CARGO_HOME to the build
  directory's `cargo/`, so cargo reads it.

Usage: scripts/flatpak-cargo-sources.py [Cargo.lock] [-o flatpak/cargo-sources.json]
Without -o it writes to standard output. Only the standard library is used.
The output is deterministic (Cargo.lock order), so tests/flatpak.rs can
check that the committed file is what this script makes of Cargo.lock.
"""

import argparse
import json
import sys
import tomllib
import urllib.parse
from pathlib import Path

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
VENDOR = "cargo/vendor"


def crate_sources(package):
    name, version = package["name"], package["version"]
    checksum = package.get("checksum")
    if not checksum:
        raise SystemExit(f"{name} {version}: Cargo.lock has no checksum")
    dest = f"{VENDOR}/{name}-{version}"
    return [
        {
            "type": "archive",
            "archive-type": "tar-gzip",
            "url": f"https://static.crates.io/crates/{name}/{name}-{version}.crate",
            "sha256": checksum,
            "dest": dest,
        },
        checksum_file(dest, checksum),
    ]


def checksum_file(dest, package_checksum):
    return {
        "type": "inline",
        "contents": json.dumps({"package": package_checksum, "files": {}}),
        "dest": dest,
        "dest-filename": ".cargo-checksum.json",
    }


def git_sources(package):
    """`git+URL?branch=B#COMMIT` -> a git source at that commit."""
    name, version = package["name"], package["version"]
    spec = package["source"][len("git+"):]
    url, _, commit = spec.partition("#")
    if not commit:
        raise SystemExit(f"{name} {version}: git source without a commit: {spec}")
    parts = urllib.parse.urlsplit(url)
    repo = parts._replace(query="", fragment="").geturl()
    # Cargo matches the replacement by URL and the branch, tag or rev asked.
    reference = tuple(
        (key, values[0])
        for key, values in sorted(urllib.parse.parse_qs(parts.query).items())
        if key in ("branch", "tag", "rev")
    )
    dest = f"{VENDOR}/{name}-{version}"
    return (repo, reference), [
        {"type": "git", "url": repo, "commit": commit, "dest": dest},
        checksum_file(dest, None),
    ]


def cargo_config(git_repos):
    lines = [
        "[source.vendored-sources]",
        f'directory = "{VENDOR}"',
        "",
        "[source.crates-io]",
        'replace-with = "vendored-sources"',
    ]
    for n, (repo, reference) in enumerate(sorted(git_repos)):
        lines += ["", f"[source.git-{n}]", f'git = "{repo}"']
        lines += [f'{key} = "{value}"' for key, value in reference]
        lines.append('replace-with = "vendored-sources"')
    return {
        "type": "inline",
        "contents": "\n".join(lines) + "\n",
        "dest": "cargo",
        "dest-filename": "config.toml",
    }


def sources(lock):
    out, git_repos = [], set()
    for package in lock.get("package", []):
        source = package.get("source")
        if source is None:
            continue  # the workspace's own crates
        if source == CRATES_IO:
            out += crate_sources(package)
        elif source.startswith("git+"):
            repo, entries = git_sources(package)
            git_repos.add(repo)
            out += entries
        else:
            raise SystemExit(f"{package['name']}: unsupported source {source}")
    out.append(cargo_config(git_repos))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("lockfile", nargs="?", default=root / "Cargo.lock", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args()
    with open(args.lockfile, "rb") as f:
        lock = tomllib.load(f)
    text = json.dumps(sources(lock), indent=4) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
