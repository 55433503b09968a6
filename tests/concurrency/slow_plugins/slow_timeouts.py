"""A test plugin that makes each timeout the sweeper applies take 10 ms, so a sweeper process can be
killed while a batch is open (tests/concurrency/test_races.py). Not a real-world plugin."""
import time

from aftersales import hookimpl


@hookimpl
def aftersales_check_action(case, actor, trigger, data):
    if actor == "system":
        time.sleep(0.01)
    return None
