"""Load the demo quiz; prints one JSON line {title, code, ...}."""

import json

print(json.dumps({}))
