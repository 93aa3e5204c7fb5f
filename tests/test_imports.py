"""The two imports without their unused import-time work (assistant/imports.py), each in a
new interpreter, as an `assistant ask` process makes them."""

import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import sys
from assistant.imports import import_bm25s, import_chromadb

chromadb = import_chromadb()
bm25s = import_bm25s()
assert import_chromadb() is chromadb and import_bm25s() is bm25s
assert "scipy.sparse" not in sys.modules, "bm25s imported scipy.sparse"

# chromadb works: a collection is written and searched.
client = chromadb.PersistentClient(sys.argv[1])
col = client.get_or_create_collection("notes", embedding_function=None)
col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["one", "two"])
assert col.query(query_embeddings=[[0.9, 0.1]], n_results=1)["documents"] == [["one"]]

# bm25s works on its numpy backend.
index = bm25s.BM25()
index.index(bm25s.tokenize(["the river flooded the town", "a budget was passed"],
                           show_progress=False), show_progress=False)
docs, _ = index.retrieve(bm25s.tokenize(["river"], show_progress=False), k=1,
                         show_progress=False)
assert int(docs[0][0]) == 0

# Afterwards the real decorator is back, and scipy.sparse imports as usual.
from overrides import override

class Base:
    def f(self, x: int) -> int:
        return x

try:
    class Wrong(Base):
        @override
        def f(self, x: int, y: int) -> int:
            return x + y
except TypeError:
    pass
else:
    raise AssertionError("override no longer checks signatures")
import scipy.sparse

assert scipy.sparse.csc_matrix((2, 2)).shape == (2, 2)
print("ok")
'''


def test_chromadb_and_bm25s_work_and_leave_their_dependencies_as_they_were(
        tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "chroma")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_an_already_imported_module_is_returned_as_it_is() -> None:
    import bm25s
    import chromadb

    from assistant.imports import import_bm25s, import_chromadb

    assert import_chromadb() is chromadb and import_bm25s() is bm25s
