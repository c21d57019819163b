"""The Severa adapter: :class:`connector.ports.SeveraGateway` over Visma Severa's SOAP 1.1 API.

``client.SeveraClient`` is the gateway (zeep for the contract, aiohttp for the wire);
``config.SeveraClientConfig`` its settings; ``keys`` where the API key comes from (fixed, or a file
followed through rotation); ``contract`` the shipped WSDL and envelope handling; ``faults`` the
classification of every failure into :mod:`connector.errors`; ``mapping`` entities ↔ port records;
``metrics`` its Prometheus metrics; ``check`` the integrator's first command. ``wsdl/`` holds the
WSDL and its generator, ``fake/`` a fake Severa service for tests and demos.

Nothing is imported here, so that importing the WSDL or the fake does not pull in the client.
"""
