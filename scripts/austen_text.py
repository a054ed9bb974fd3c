#!/usr/bin/env python3
"""Rebuilds data/text/austen.txt from Debian's r-cran-janeaustenr package (standard library only).

    apt-get download r-cran-janeaustenr        # r-cran-janeaustenr_1.0.0-1_all.deb, MIT
    python3 scripts/austen_text.py r-cran-janeaustenr_1.0.0-1_all.deb > data/text/austen.txt

The package (Julia Silge's CRAN package janeaustenr 1.0.0) holds Jane Austen's six novels as
character vectors, one element per line of the Project Gutenberg plain-text edition, with
Project Gutenberg's header and footer already removed. They sit in R's lazy-load database
(`data/Rdata.rdx` + `data/Rdata.rdb`), which this script reads with a small reader of R's
serialization format (XDR), so neither R nor any Python package is needed.

Cleaning (each step a function below):
  1. the novels in order of publication, each starting with its title line;
  2. hard-wrapped lines joined into one line per paragraph (blank lines separate paragraphs);
  3. Project Gutenberg's `_italics_` markers removed (the underscores only, not the words);
  4. runs of whitespace collapsed to one space; lines with no letters (e.g. `* * *`) dropped;
  5. the editors' notes dropped: the bracketed notes on where a volume of an edition ended, and
     the modern "A NOTE ON THE TEXT" after Northanger Abbey (see EDITORIAL).
The output has one paragraph per line, which is how the `lm` task reads a corpus: each line
is one unit of text followed by [EOS], and the last lines are held out.
"""
import io
import re
import struct
import sys
import tarfile
import zlib
import gzip

# In order of publication; the janeaustenr object name and the title line we write.
NOVELS = [
    ("sensesensibility", "Sense and Sensibility"),
    ("prideprejudice", "Pride and Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
]
# Paragraphs by an editor, not by Austen: notes on where a volume ended in some edition, and the
# note on the edition after Northanger Abbey (from its heading to the end of the novel).
EDITORIAL = re.compile(r"^\[(At this point in the first|End volume one of this edition)")
NOTE_ON_THE_TEXT = "A NOTE ON THE TEXT"
DATA_DIR = "./usr/lib/R/site-library/janeaustenr/data/"


def deb_members(path):
    """The files of a .deb's data archive: {name: bytes} (an ar archive holding a tar)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"!<arch>\n", f"{path} is not a .deb (ar) archive"
    pos = 8
    while pos < len(raw):
        name = raw[pos : pos + 16].decode().strip().rstrip("/")
        size = int(raw[pos + 48 : pos + 58].decode())
        body = raw[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                return {
                    m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()
                }
    raise ValueError(f"{path} has no data.tar member")


class RObj:
    """An R vector with its attributes (names, class, ...)."""

    def __init__(self, value, attrs):
        self.value, self.attrs = value, attrs


class Reader:
    """R's serialization format, version 2 or 3, XDR: the subset that data vectors need."""

    def __init__(self, data):
        assert data[:2] == b"X\n", "not an XDR serialization"
        self.data, self.pos, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()  # writer's R version, minimal reader version
        if version == 3:
            n = self.int()  # native encoding name
            self.pos += n

    def int(self):
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def length(self):
        n = self.int()
        return n if n != -1 else (self.int() << 32) + self.int()

    def attributes(self, has_attr):
        if not has_attr:
            return {}
        pairs = self.item()
        return dict(pairs) if isinstance(pairs, list) else {}

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & 0x200, flags & 0x400
        if kind in (254, 242, 241, 253, 252, 251, 247):  # NULL and the special environments
            return None
        if kind == 255:  # reference to an earlier symbol or environment
            i = flags >> 8 or self.int()
            return self.refs[i - 1]
        if kind == 1:  # symbol
            sym = self.item()
            self.refs.append(sym)
            return sym
        if kind == 2:  # pairlist: a list of (tag, value)
            out = []
            while True:
                self.attributes(has_attr)  # a pairlist node's own attributes: unused
                tag = self.item() if has_tag else None
                out.append((tag, self.item()))
                flags = self.int()
                kind, has_attr, has_tag = flags & 0xFF, flags & 0x200, flags & 0x400
                if kind != 2:
                    self.pos -= 4
                    rest = self.item()
                    assert rest is None, "a pairlist ends in NULL"
                    return out
        if kind == 9:  # CHARSXP: one string (-1 = NA)
            n = self.int()
            if n == -1:
                return None
            s = self.data[self.pos : self.pos + n].decode("utf-8")
            self.pos += n
            return s
        if kind in (10, 13):  # logical, integer
            n = self.length()
            v = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == 14:  # double
            n = self.length()
            v = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind in (16, 19, 20):  # character vector, list, expression
            v = [self.item() for _ in range(self.length())]
        else:
            raise ValueError(f"R object of type {kind} at byte {self.pos} is not supported")
        return RObj(v, self.attributes(has_attr))


def lazyload(files):
    """The objects of janeaustenr's lazy-load database: {name: RObj}."""
    index = Reader(gzip.decompress(files[DATA_DIR + "Rdata.rdx"])).item()
    index = dict(zip(index.attrs["names"].value, index.value))
    variables = index["variables"]
    variables = dict(zip(variables.attrs["names"].value, variables.value))
    db = files[DATA_DIR + "Rdata.rdb"]
    out = {}
    for name, where in variables.items():
        offset, size = (int(x) for x in where.value)
        block = db[offset : offset + size]
        (raw_len,) = struct.unpack(">i", block[:4])
        raw = zlib.decompress(block[4:])
        assert len(raw) == raw_len, f"{name}: block length"
        out[name] = Reader(raw).item()
    return out


def paragraphs(lines):
    """Hard-wrapped lines -> one string per paragraph (blank lines separate paragraphs)."""
    out, current = [], []
    for line in lines + [""]:
        if line is None or not line.strip():
            if current:
                out.append(" ".join(current))
                current = []
        else:
            current.append(line.strip())
    return out


def clean(paragraph):
    """Step 3 and 4 of the module docs: no `_` italics markers, single spaces."""
    paragraph = paragraph.replace("_", "")
    return re.sub(r"\s+", " ", paragraph).strip()


def main():
    files = deb_members(sys.argv[1])
    objects = lazyload(files)
    out = []
    for name, title in NOVELS:
        lines = objects[name].value
        text = [clean(p) for p in paragraphs(lines)]
        text = [p for p in text if re.search(r"[A-Za-z]", p) and not EDITORIAL.match(p)]
        if NOTE_ON_THE_TEXT in text:
            text = text[: text.index(NOTE_ON_THE_TEXT)]
        # janeaustenr starts each novel with its title (upper or mixed case): write ours once.
        if text[0].lower() == title.lower():
            text = text[1:]
        out.append(title)
        out.extend(text)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
