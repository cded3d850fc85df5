"""TLS interception: the CA every replica shares, leaf certificates for provider hosts, CONNECT and the TLS listener.

A leaf is only ever minted for a host the routing table knows as a provider;
every other host is refused or, when configured, tunnelled blind.
"""
