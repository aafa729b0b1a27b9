"""A stand-in QEMU: a real process that speaks QMP and has no guest (tests/vm, tests/run).

Arguments: the QMP socket to connect to, a file that gets each command as a JSON line, a
mode for `dump-guest-memory` ("ok": the file is written and DUMP_COMPLETED says complete;
"fail": it says QEMU's error; "hang": no event ever), and the formats it offers for dumps
(comma-separated). Every other command gets an empty return; `quit` ends it.
"""

from __future__ import annotations

STAND_IN_QEMU = r"""
import json, socket, sys
qmp, log, mode, formats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
s = socket.socket(socket.AF_UNIX)
s.connect(qmp)
def send(obj):
    s.sendall(json.dumps(obj).encode() + b"\r\n")
send({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}})
decoder, buf = json.JSONDecoder(), ""
while chunk := s.recv(4096):
    buf += chunk.decode()
    while buf.strip():
        try:
            msg, end = decoder.raw_decode(buf.lstrip())
        except ValueError:
            break
        buf = buf.lstrip()[end:]
        command = msg.get("execute")
        with open(log, "a") as f:
            f.write(json.dumps({"execute": command, "arguments": msg.get("arguments", {})}) + "\n")
        reply = {"return": {}}
        if command == "query-dump-guest-memory-capability":
            reply = {"return": {"formats": formats}}
        send({**reply, **({"id": msg["id"]} if "id" in msg else {})})
        if command == "dump-guest-memory":
            path = msg["arguments"]["protocol"].removeprefix("file:")
            with open(path, "wb") as f:
                f.write(b"KDUMP   half a dump")
            data = {"result": {"status": "completed", "completed": 19, "total": 19}}
            if mode == "fail":
                data = {"result": {"status": "failed", "completed": 0, "total": 19},
                        "error": "dump: failed to save memory: No space left on device"}
            if mode != "hang":
                stamp = {"seconds": 0, "microseconds": 0}
                send({"event": "DUMP_COMPLETED", "data": data, "timestamp": stamp})
        if command == "quit":
            sys.exit(0)
"""
