#!/usr/bin/env python3
"""Checks Prometheus text exposition (format 0.0.4) read on stdin.

Usage: check_prometheus.py [--vm NAME] FAMILY:TYPE ...

The text is parsed with prometheus_client.parser.text_string_to_metric_families (Debian:
python3-prometheus-client). Checks: it parses; every FAMILY:TYPE given exists with that type
(a counter may be named with or without its _total suffix: the parser strips it) and has at
least one sample; every sample of every family carries a "vm" label (equal to NAME when
--vm is given); no family is declared twice. Prints a summary; exits 1 on any failure, 2 on
bad usage or a missing parser module.
"""
import argparse
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("check_prometheus: python module prometheus_client not found "
          "(install python3-prometheus-client)", file=sys.stderr)
    sys.exit(2)


def family_key(name, mtype):
    if mtype == "counter" and name.endswith("_total"):
        return name[: -len("_total")]
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vm", help="the value every vm label must have")
    parser.add_argument("required", nargs="*", metavar="FAMILY:TYPE")
    args = parser.parse_args()

    required = []
    for item in args.required:
        name, sep, mtype = item.rpartition(":")
        if not sep or not name or not mtype:
            parser.error(f"expected FAMILY:TYPE, got {item!r}")
        required.append((name, mtype))

    text = sys.stdin.read()
    failures = []
    families = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name in families:
                failures.append(f"family {family.name} declared twice")
            families[family.name] = family
    except Exception as e:  # the parser raises ValueError and others on bad text
        print(f"FAIL: the text does not parse: {e}")
        return 1

    samples = 0
    for family in families.values():
        for sample in family.samples:
            samples += 1
            if "vm" not in sample.labels:
                failures.append(f"sample {sample.name}{sample.labels} has no vm label")
            elif args.vm is not None and sample.labels["vm"] != args.vm:
                failures.append(f"sample {sample.name} has vm={sample.labels['vm']!r}, "
                                f"expected {args.vm!r}")

    for name, mtype in required:
        family = families.get(family_key(name, mtype))
        if family is None:
            failures.append(f"required family {name} ({mtype}) is missing")
        elif family.type != mtype:
            failures.append(f"family {name} has type {family.type}, expected {mtype}")
        elif not family.samples:
            failures.append(f"family {name} has no samples")

    print(f"{len(families)} families, {samples} samples, {len(required)} required families")
    for failure in failures:
        print(f"FAIL: {failure}")
    if failures:
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
