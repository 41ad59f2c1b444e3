"""TLS for txcaddy: certificate storage, the internal CA, ACME and the certificate manager."""
