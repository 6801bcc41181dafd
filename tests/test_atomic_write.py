"""paths.write_text_atomic: whole files only, also with two processes writing the same one."""

import multiprocessing

from cnn_rnn import paths


def _write_many(path: str, text: str, times: int) -> None:
    for _ in range(times):
        paths.write_text_atomic(path, text)


def test_two_processes_writing_one_file_leave_one_whole_version(tmp_path):
    # A sweep run as two processes on one workdir rewrites results.json from both: with a shared
    # temporary name one process's rename finds the file already moved and crashes.
    path = str(tmp_path / "results.json")
    texts = ["a" * 100_000, "b" * 100_000]
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_many, args=(path, t, 300)) for t in texts]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert open(path).read() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left
