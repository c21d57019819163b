"""The Netvisor adapter: :class:`connector.ports.AccountingGateway` over Visma Netvisor's XML API.

``signing`` computes the HMAC-SHA256 headers every request carries; ``fake/`` is a fake Netvisor
for tests, demos and compose that verifies them. Nothing is imported here, so that importing the
fake does not pull in the client.
"""
