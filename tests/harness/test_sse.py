"""SSE parsing: chunk boundaries anywhere, CRLF, comments, multi-line data, named events."""
from hypothesis import given, strategies as st

from apiary_suite.client import SSEParser, chunk_text

STREAM = (b": keep-alive\r\n\r\n"
          b'data: {"id":"j1","choices":[{"text":" the"}]}\n\n'
          b'data: {"id":"j1","choices":[{"text":" hive"}]}\r\n\r\n'
          b"event: error\ndata: {\"error\":{\"code\":\"worker_lost\",\"job_id\":\"j1\"}}\n\n"
          b"data: line1\ndata: line2\n\n"
          b"data: [DONE]\n\n")


def _events(chunks):
    parser = SSEParser()
    out = []
    for c in chunks:
        out += parser.feed(c)
    return out


def test_whole_stream():
    ev = _events([STREAM])
    assert [e["event"] for e in ev] == ["message", "message", "error", "message", "message"]
    assert ev[3]["data"] == "line1\nline2" and ev[-1]["data"] == "[DONE]"


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_any_chunking_gives_the_same_events(cuts):
    cuts = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
    assert _events(pieces) == _events([STREAM])


def test_chunk_text_shapes():
    assert chunk_text({"choices": [{"text": " a"}]}) == " a"
    assert chunk_text({"choices": [{"delta": {"content": " b"}}]}) == " b"
    assert chunk_text({"choices": [{"message": {"content": " c"}}]}) == " c"
    assert chunk_text({"choices": [{"delta": {}}]}) == ""
