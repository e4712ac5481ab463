"""Helpers the tests share: a clock to move by hand, waiting, fresh databases, our processes, Maven peers."""
