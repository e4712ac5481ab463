#!/usr/bin/env bash
# The FHIR packages the validator agreement test (tests/validation/test_hapi_agreement.py) judges, from the npm
# registry, each downloaded once into .cache/ (never committed); `make test` and `make check` call this:
#   hl7.fhir.r4.examples 4.0.1   the official R4 examples, published by HL7
#   hl7.fhir.uv.ips 2.0.0        the International Patient Summary IG (R4): its profiles and examples
#   hl7.fhir.us.davinci-pdex-plan-net 1.2.0   Da Vinci Plan-Net (R4): profiles and examples for the global-profile
#                                tests (tests/validation/global_cases.py)
set -euo pipefail
dest="${1:-.cache}"
mkdir -p "$dest"
for spec in hl7.fhir.r4.examples@4.0.1 hl7.fhir.uv.ips@2.0.0 hl7.fhir.us.davinci-pdex-plan-net@1.2.0; do
  target="$dest/${spec%@*}-${spec#*@}.tgz"
  [ -s "$target" ] && continue
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "$spec" --silent >/dev/null)
  mv "$tmp"/*.tgz "$target"
  rm -rf "$tmp"
done
