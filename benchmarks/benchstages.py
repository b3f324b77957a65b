"""Trivial stage functions for the benchmarks (a module, so processes can import it)."""

import time


def trivial(x):
    return x + 1


def inc_root():
    return 0


def inc(x):
    return x + 1


def count_args(*args):
    return len(args)


def sleep_tenth(_x):
    time.sleep(0.1)
    return _x


def boom(_x):
    raise ValueError("a planned failure")


def nap(seconds):
    time.sleep(seconds)
    return seconds
