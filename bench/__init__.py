"""The side-by-side benchmark (`make bench`) and the loopback proxy it shares with the tests."""
