#!/usr/bin/env bash
# The official FHIR R4 4.0.1 examples (npm package hl7.fhir.r4.examples, published by HL7), which the
# validator agreement test samples. Downloaded once into .cache/; `make test` calls this.
set -euo pipefail
dest="${1:-.cache}"
target="$dest/hl7.fhir.r4.examples-4.0.1.tgz"
[ -s "$target" ] && exit 0
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack hl7.fhir.r4.examples@4.0.1 --silent >/dev/null)
mv "$tmp"/hl7.fhir.r4.examples-4.0.1.tgz "$target"
