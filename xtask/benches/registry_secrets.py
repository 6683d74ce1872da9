#!/usr/bin/env python3
"""Scans every blob a registry holds for the secrets a kiln result withheld.

Usage: registry_secrets.py RESULT_DIR BLOBS_DIR SECRETS_DIR

RESULT_DIR is the result `cargo xtask push` sent (its manifest.json marks the secret outputs),
BLOBS_DIR the registry's blob storage (for docker-registry with filesystem storage:
<rootdirectory>/docker/registry/v2/blobs), SECRETS_DIR the cluster's root-secret directory.
The needles: every private key found in the withheld outputs (each PEM body line and the
base64 of the whole key, as kubeconfigs embed it), the encryption keys, the root secret (hex,
base64, raw). The search is GNU grep -F (Aho-Corasick over all needles at once), an independent
tool. Prints the hits (there must be none) and, for information, the blobs holding any PEM
private-key header at all (upstream test keys in vendored sources are expected there).
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile

NEEDLES = os.path.join(tempfile.mkdtemp(), 'needles')
res, blobs_root, secrets_dir = sys.argv[1], sys.argv[2], sys.argv[3]
m = json.load(open(os.path.join(res, 'manifest.json')))['artifacts']
secret = {k: v['store_path'] for k, v in m.items() if v['secret']}
needles = {}
def add(what, value):
    if value and b'\n' not in value and len(value) >= 16:
        needles.setdefault(value, what)
pem = re.compile(rb'-----BEGIN [A-Z ]*PRIVATE KEY-----\n.*?-----END [A-Z ]*PRIVATE KEY-----\n?', re.S)
keys = 0
for ident, path in secret.items():
    for root, dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p) or os.path.getsize(p) > 1 << 20: continue
            data = open(p, 'rb').read()
            found = [k.group(0) for k in pem.finditer(data)]
            for line in data.splitlines():
                if b'client-key-data:' in line:
                    found.append(base64.b64decode(line.split(b':', 1)[1].strip()))
                s = line.strip()
                if s.startswith(b'secret: '):
                    add('encryption key of ' + ident, s[8:])
            for k in found:
                keys += 1
                add('key (base64) of ' + ident, base64.b64encode(k))
                for l in k.splitlines():
                    if len(l) >= 40 and not l.startswith(b'-----'):
                        add('key line of ' + ident, l)
for root, dirs, files in os.walk(secrets_dir):
    for f in files:
        data = open(os.path.join(root, f), 'rb').read()
        add('root secret (hex)', data.hex().encode()); add('root secret (base64)', base64.b64encode(data)); add('root secret (raw)', data)
open(NEEDLES, 'wb').write(b'\n'.join(needles.keys()) + b'\n')
blobs = [os.path.join(r, 'data') for r, d, f in os.walk(blobs_root) if 'data' in f]
total = sum(os.path.getsize(b) for b in blobs)
print(f'{len(secret)} secret paths, {keys} private keys found in them, {len(needles)} needles; scanning {len(blobs)} blobs, {total/2**20:.0f} MiB')
out = subprocess.run(['grep', '-F', '-a', '-o', '-f', NEEDLES] + blobs, capture_output=True)
hits = out.stdout.splitlines()
print('hits:', len(hits))
for h in hits[:10]:
    name, _, value = h.partition(b':')
    print(name.decode(), needles.get(value, '?'))
markers = subprocess.run(['grep', '-F', '-a', '-c', '-e', 'BEGIN EC PRIVATE KEY', '-e', 'BEGIN PRIVATE KEY', '-e', 'BEGIN RSA PRIVATE KEY'] + blobs, capture_output=True).stdout.decode().splitlines()
print('blobs with a PEM private-key header:', [l for l in markers if not l.endswith(':0')][:10])
sys.exit(1 if hits else 0)
