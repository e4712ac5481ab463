"""The admin console's core, without Flask: accounts and sign-in, the session key, and the page data.

    accounts   admin accounts (argon2 hashes), sign-in with a lockout kept in the database
    signing    the session signing key: KFHIR_SECRET_KEY, else generated once and kept in the database
    overview   counts of records and FHIR resources
    mappings   a mapping specification grouped for review, with a worked example from the demo data
    profiles   our StructureDefinitions: element tables, invariants, examples validated; the IG package
    trial      "try it": a record or a FHIR document checked, mapped and validated, nothing stored
    course     patients by identifier, and one patient's plans, sessions, scores, adverse events, warnings
    history    every version of each mapping (recorded when first run, and from git) and their diffs
    exchange   endpoints' capability checks and sandbox-checks, run on request and kept
    audit      the audit trail as table rows; the console's own accesses recorded in it
"""
