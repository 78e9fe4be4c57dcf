"""What the local ITSM stand-ins (ServiceNow, BMC Helix) share: a loopback HTTP server with fault injection."""
