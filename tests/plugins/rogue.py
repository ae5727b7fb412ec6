#!/usr/bin/env python3
"""A plugin that misbehaves on request, for tests/it/plugins.rs.

Arguments: --bad-manifest (a manifest the gateway must refuse),
--config-schema (declare a config schema: {"greeting": string}),
--slow-start SECONDS (wait before writing the manifest).
"""

import json
import os
import sys
import time

OBJECT = {"type": "object"}

def method(scope, params, result):
    return {"summary": "test", "scope": scope, "params": params, "result": result}

ECHO_PARAMS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["text"],
    "properties": {"text": {"type": "string", "maxLength": 10}},
}
ECHO_RESULT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["text"],
    "properties": {"text": {"type": "string"}},
}

MANIFEST = {
    "name": "rogue",
    "version": "0.1.0",
    "protocol": {"min": 1, "max": 1},
    "methods": {
        "echo": method("operator.read", ECHO_PARAMS, ECHO_RESULT),
        "bad": method("operator.read", OBJECT, ECHO_RESULT),
        "hang": method("operator.read", OBJECT, OBJECT),
        "crash": method("operator.read", OBJECT, OBJECT),
        "seen": method("operator.read", OBJECT, OBJECT),
        "env": method("operator.read", OBJECT, OBJECT),
        "emit": method("operator.read", OBJECT, OBJECT),
        "fail": method("operator.read", OBJECT, OBJECT),
        "wipe": method("operator.admin", OBJECT, OBJECT),
        "init": method("operator.read", OBJECT, OBJECT),
        "burst": method("operator.read", OBJECT, OBJECT),
    },
    "http": {"summary": "echoes requests", "scope": "operator.read"},
    "events": {
        "ping": {
            "summary": "test",
            "scope": "operator.read",
            "payload": {
                "type": "object",
                "additionalProperties": False,
                "required": ["n"],
                "properties": {"n": {"type": "integer"}},
            },
        }
    },
}


def send(frame):
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


def main():
    args = sys.argv[1:]
    if "--slow-start" in args:
        time.sleep(float(args[args.index("--slow-start") + 1]))
    if "--bad-manifest" in args:
        bad = dict(MANIFEST)
        bad["methods"] = {"echo": {"summary": "test", "scope": "operator.everything", "params": OBJECT}}
        send(bad)
        time.sleep(60)
        return
    if "--no-http" in args:
        del MANIFEST["http"]
    if "--config-schema" in args:
        MANIFEST["config"] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {"greeting": {"type": "string"}},
        }
    send(MANIFEST)
    init = json.loads(sys.stdin.readline())
    seen = []
    for line in sys.stdin:
        frame = json.loads(line)
        if "cancel" in frame:
            seen.append("cancel " + frame["cancel"])
            continue
        if "http" in frame:
            request = frame["http"]
            if request["path"] == "/bad":
                response = {"status": 99}
            else:
                response = {
                    "status": 201 if request["method"] == "POST" else 200,
                    "headers": {"Content-Type": "application/json", "Set-Cookie": "a=b", "X-Plugin": "1"},
                    "body": json.dumps(request),
                }
            send({"id": frame["id"], "result": response})
            continue
        name, params = frame["method"], frame.get("params")
        seen.append(name)
        answer = {"id": frame["id"]}
        if name == "echo":
            answer["result"] = {"text": params["text"]}
        elif name == "bad":
            answer["result"] = {"text": 42, "secret": "never forwarded"}
        elif name == "hang":
            continue
        elif name == "crash":
            os._exit(3)
        elif name == "seen":
            answer["result"] = {"seen": seen[:-1]}
        elif name == "env":
            answer["result"] = {"env": sorted(os.environ.keys())}
        elif name == "emit":
            send({"event": "ping", "data": {"n": "not a number"}})
            send({"event": "undeclared", "data": {}})
            send({"event": "ping", "data": {"n": 7}})
            answer["result"] = {}
        elif name == "init":
            answer["result"] = {"init": init, "args": sys.argv[1:]}
        elif name == "burst":
            for _ in range(params["n"]):
                send({"event": "ping", "data": {"n": 1}})
            answer["result"] = {}
        elif name == "fail":
            answer["error"] = {"code": -32008, "message": "no such thing"}
        else:
            answer["result"] = {}
        send(answer)


if __name__ == "__main__":
    main()
