#!/usr/bin/env python3
"""A clawgate plugin in plain Python (no packages): a shared notepad.

Configure it in clawgate.toml:

    [plugins.notes]
    command = "python3"
    args = ["examples/plugins/notes.py"]
    config = { file = "/var/lib/clawgate/notes.json", maxNotes = 1000 }

Clients then call notes.add and notes.list and receive notes.added; an
agent whose tools list "notes.add" may call it as the tool notes_add; and
GET /plugins/notes/ (with the gateway's bearer credential) lists them.
The protocol (README, "Plugins"): write the manifest as the first line of
stdout, read the init line, then answer one JSON request per line and
write events whenever there is something to say.
"""

import json
import os
import sys
import time

MANIFEST = {
    "name": "notes",
    "version": "1.0.0",
    "protocol": {"min": 1, "max": 1},
    "summary": "A notepad shared by every operator client.",
    "methods": {
        "add": {
            "summary": "Add a note; everyone with operator.read hears notes.added.",
            "scope": "operator.write",
            "tool": True,
            "params": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text"],
                "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 2000}},
            },
            "result": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "count"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "count": {"type": "integer", "minimum": 1},
                },
            },
            "example": {"params": {"text": "buy milk"}, "result": {"id": 1, "count": 1}},
        },
        "list": {
            "summary": "Every note, oldest first.",
            "scope": "operator.read",
            "tool": True,
            "params": {"type": "object", "additionalProperties": False, "properties": {}},
            "result": {
                "type": "object",
                "additionalProperties": False,
                "required": ["notes"],
                "properties": {
                    "notes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["id", "text", "atMs"],
                            "properties": {
                                "id": {"type": "integer"},
                                "text": {"type": "string"},
                                "atMs": {"type": "integer"},
                            },
                        },
                    }
                },
            },
        },
    },
    "events": {
        "added": {
            "summary": "A note was added.",
            "scope": "operator.read",
            "payload": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "text"],
                "properties": {"id": {"type": "integer"}, "text": {"type": "string"}},
            },
        }
    },
    "http": {"summary": "GET /: the notes as plain text, one per line.", "scope": "operator.read"},
    "config": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "file": {"type": "string", "minLength": 1},
            "maxNotes": {"type": "integer", "minimum": 1, "default": 1000},
        },
    },
}


def send(frame):
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


class Notes:
    def __init__(self, config):
        self.file = config.get("file")
        self.max = config.get("maxNotes", 1000)
        self.notes = []
        if self.file and os.path.exists(self.file):
            with open(self.file) as f:
                self.notes = json.load(f)

    def save(self):
        if not self.file:
            return
        temp = self.file + ".tmp"
        with open(temp, "w") as f:
            json.dump(self.notes, f)
        os.replace(temp, self.file)

    def add(self, params):
        if len(self.notes) >= self.max:
            raise Refused(-32007, f"the notepad is full ({self.max} notes)")
        note = {
            "id": (self.notes[-1]["id"] + 1) if self.notes else 1,
            "text": params["text"],
            "atMs": int(time.time() * 1000),
        }
        self.notes.append(note)
        self.save()
        send({"event": "added", "data": {"id": note["id"], "text": note["text"]}})
        return {"id": note["id"], "count": len(self.notes)}

    def list(self, _params):
        return {"notes": self.notes}

    def http(self, request):
        if request["method"] != "GET" or request["path"] != "/":
            return {"status": 404, "body": "not found\n"}
        text = "".join(f"{note['id']}. {note['text']}\n" for note in self.notes)
        return {"status": 200, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": text}


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def main():
    send(MANIFEST)
    init = json.loads(sys.stdin.readline())
    notes = Notes(init["config"])
    for line in sys.stdin:
        frame = json.loads(line)
        if "cancel" in frame:
            continue
        if "http" in frame:
            send({"id": frame["id"], "result": notes.http(frame["http"])})
            continue
        handler = getattr(notes, frame["method"], None)
        try:
            if handler is None:
                raise Refused(-32601, f"no method {frame['method']}")
            send({"id": frame["id"], "result": handler(frame.get("params") or {})})
        except Refused as e:
            send({"id": frame["id"], "error": {"code": e.code, "message": str(e)}})


if __name__ == "__main__":
    main()
