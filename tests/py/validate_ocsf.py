"""Validates OCSF records against the official OCSF schema of their version
(PyPI ocsf-json-schema builds each class's JSON Schema from the OCSF schema;
jsonschema checks it), not govledger's code.

usage: validate_ocsf.py FILE   (one JSON record per line)
Prints one line per record, "OK <class_uid> <version>" or "INVALID <class_uid>
<version>: <error>", and exits 1 if any record is invalid.
"""
import json
import sys

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

schemas = {}
bad = 0
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    rec = json.loads(line)
    version = rec["metadata"]["version"]
    uid = rec["class_uid"]
    key = (version, uid)
    if key not in schemas:
        emb = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
        schema = emb.get_class_schema(emb.lookup_class_name_from_uid(uid))
        schemas[key] = jsonschema.Draft202012Validator(schema)
    errors = sorted(schemas[key].iter_errors(rec), key=lambda e: list(e.path))
    if errors:
        bad += 1
        print("INVALID", uid, version + ":", "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5]))
    else:
        print("OK", uid, version)
sys.exit(1 if bad else 0)
