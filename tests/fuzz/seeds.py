#!/usr/bin/env python3
"""seeds.py FIXTURES OUT — derives each fuzz target's seed inputs from tests/fixtures/ into
OUT/<target>/ (called by scripts/fuzz on every run; cheap, deterministic, no network)."""
import base64, glob, gzip, hashlib, io, json, os, sys, tarfile

fixtures, out = sys.argv[1], sys.argv[2]
counts = {}

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1

def varint(p, off):
    v = shift = 0
    while True:
        b = p[off]; off += 1
        v |= (b & 0x7F) << shift; shift += 7
        if not b & 0x80:
            return v, off

def car_sections(p):
    """(cid bytes, data) of every block of a CAR v1 (CIDv1, sha2-256) after its header."""
    hlen, off = varint(p, 0)
    off += hlen
    while off < len(p):
        n, off = varint(p, off)
        sec = p[off:off + n]; off += n
        cid_len = 4 + sec[3]  # version, codec, hash code, digest length: one byte each here
        yield sec[:cid_len], sec[cid_len:]

def b32(raw):
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")

# car, cbor: the repo fixture and its blocks; the data-model fixtures' CBOR
car = open(os.path.join(fixtures, "car/repo-30.car"), "rb").read()
put("car", car)
blocks = list(car_sections(car))
for cid, data in blocks:
    put("cbor", data)
hlen, off = varint(car, 0)
put("cbor", car[off:off + hlen])
for case in json.load(open(os.path.join(fixtures, "interop/data-model/data-model-fixtures.json"))):
    c = case["cbor_base64"]
    put("cbor", base64.b64decode(c + "=" * (-len(c) % 4)))
    put("cbor", json.dumps(case["json"]))
for name in ("data-model-valid.json", "data-model-invalid.json"):
    for case in json.load(open(os.path.join(fixtures, "interop/data-model", name))):
        put("cbor", json.dumps(case.get("json", case)))

# plc: whole audit logs, each entry, each operation; datetimes
for path in sorted(glob.glob(os.path.join(fixtures, "plc/log_*.json"))):
    raw = open(path, "rb").read()
    put("plc", raw)
    for entry in json.loads(raw):
        put("plc", json.dumps(entry))
        put("plc", json.dumps(entry["operation"]))
for line in open(os.path.join(fixtures, "interop/syntax/datetime_syntax_valid.txt")):
    if line.strip() and not line.startswith("#"):
        put("plc", json.dumps(line.rstrip("\n")))

# plc, built logs (fuzz_plc.c: 0x01, then 4 bytes per op): a chain, a fork within 72 h, a tombstone
put("plc", bytes([1, 0x30, 0, 0, 0,  0x30, 0, 0, 2,  0x30, 1, 1, 2]))
put("plc", bytes([1, 0x30, 0, 0, 0,  0x34, 0, 1, 2,  0x30, 0, 0, 4]))
put("plc", bytes([1, 0xF0, 0, 0, 0,  0xF0, 0, 3, 2,  0x03, 1, 2, 1]))

# diddoc: a document per signature fixture key (both id forms), and the PLC logs' shapes
sig = json.load(open(os.path.join(fixtures, "interop/crypto/signature-fixtures.json")))
did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
for i, case in enumerate(sig):
    vm_id = "#atproto" if i % 2 else did + "#atproto"
    put("diddoc", json.dumps({
        "@context": ["https://www.w3.org/ns/did/v1"], "id": did,
        "alsoKnownAs": ["at://alice.example.com"],
        "verificationMethod": [{"id": vm_id, "type": case["didDocSuite"], "controller": did,
                                "publicKeyMultibase": case["publicKeyMultibase"]}],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": "https://pds.example.com/"}]}))

# codec: selector byte (see fuzz_codec.c) + text
def codec(sel, text):
    put("codec", bytes([sel]) + (text.encode() if isinstance(text, str) else text))
for v in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
    enc = bytearray()
    while True:
        b = v & 0x7F; v >>= 7
        enc.append(b | (0x80 if v else 0))
        if not v:
            break
    codec(0, bytes(enc))
for cid, _ in blocks[:4]:
    s = b32(cid)
    codec(1, s[1:]); codec(6, s); codec(9, s); codec(9, cid); codec(7, cid)
    codec(3, base64.urlsafe_b64encode(cid).decode().rstrip("=")); codec(4, base64.b64encode(cid).decode().rstrip("="))
    codec(5, cid.hex()); codec(6, "u" + base64.urlsafe_b64encode(cid).decode().rstrip("="))
for case in sig:
    codec(8, case["publicKeyDid"]); codec(8, case["publicKeyMultibase"]); codec(2, case["publicKeyMultibase"][1:])
    codec(6, case["publicKeyMultibase"])
for path in glob.glob(os.path.join(fixtures, "interop/crypto/w3c_didkey_*.json")):
    for case in json.load(open(path)):
        codec(8, case["publicDidKey"])
for name in ("did", "handle", "nsid", "tid", "recordkey", "aturi", "datetime", "cid", "atidentifier"):
    for kind in ("valid", "invalid"):
        lines = [l.rstrip("\n") for l in open(os.path.join(fixtures, f"interop/syntax/{name}_syntax_{kind}.txt"))
                 if l.strip() and not l.startswith("#")]
        for l in lines[:12]:
            codec(10, l)
codec(11, "9" * 64)

# snapshot: archives laid out as snapshot_pack writes them (SHA256SUMS last), plain and gzip
def snapshot_tar(files, gz):
    top = did.replace(":", "_") + "-20250101T000000Z"  # a snapshot id (backup_names.h)
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as t:
        sums = ""
        for name, data in files + [("SHA256SUMS", None)]:
            if data is None:
                data = sums.encode()
            else:
                sums += hashlib.sha256(data).hexdigest() + "  " + name + "\n"
            info = tarfile.TarInfo(top + "/" + name)
            info.size, info.mode = len(data), 0o600
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(bio.getvalue(), mtime=0) if gz else bio.getvalue()
blob = b"not really a png"
blob_cid = b32(bytes([1, 0x55, 0x12, 32]) + hashlib.sha256(blob).digest())
files = [("manifest.json", json.dumps({"format": "pdsmove-snapshot", "version": 1, "did": did}).encode()),
         ("did-doc.json", json.dumps({"id": did}).encode()),
         ("blob-list.txt", (blob_cid + "\n").encode()),
         ("repo.car", car[:600]),
         ("blobs/" + blob_cid, blob)]
put("snapshot", snapshot_tar(files, False))
put("snapshot", snapshot_tar(files, True))
put("snapshot", snapshot_tar(files[:3], False))

print(" ".join(f"{t}={n}" for t, n in sorted(counts.items())))
