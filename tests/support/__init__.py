"""Helpers shared by the test packages: receivers, fake backends, alert bodies, tokens, replicas, image build."""
