"""The reverse_proxy handler and its upstream transport."""
