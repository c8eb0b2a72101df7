import pytest

from sparkle_assets.core.executor import InProcessExecutor, ProcessPoolExecutor, make_executor


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("bad clip 3")
    return x * x


@pytest.mark.parametrize("executor", [InProcessExecutor(), ProcessPoolExecutor(2)], ids=["in_process", "pool"])
def test_one_failure_does_not_fail_the_others(executor):
    outcomes = executor.map(square_or_fail, [1, 2, 3, 4])
    assert [o.value for o in outcomes] == [1, 4, None, 16]
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert outcomes[2].error == "ValueError: bad clip 3" and "Traceback" in outcomes[2].detail


def test_bad_executor_settings_are_refused():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("ray-ish")
    with pytest.raises(ValueError, match="workers"):
        ProcessPoolExecutor(0)
