"""The test harness's ServerProcess: its output is read while the test does other things."""

from __future__ import annotations

import re
import sys

from tests.servers import ServerProcess

CHATTY = "import sys\nfor i in range(20000): print('x' * 60, i)\nprint('done', flush=True)\n"


def test_a_chatty_process_never_blocks_on_a_full_pipe() -> None:
    """1.2 MB of output, far more than a pipe holds, while the test only waits for the
    process (as a test does while it drives load): it still runs to its end, and every line
    is kept."""
    server = ServerProcess([sys.executable, "-c", CHATTY], wait_for_port=False)
    try:
        assert server.proc.wait(timeout=20) == 0
        assert server.wait(timeout=5) == 0
        assert server.output.count(b"\n") == 20001
        assert server.wait_for(re.compile(rb"^done$", re.M), 1) == 0
    finally:
        server.close()
