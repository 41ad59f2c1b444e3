"""TLS: certificates, storage, the local CA, ACME and automatic HTTPS."""
