"""Entry point of the secure-export component package: hosts the components for `pulumi package add`."""

from pulumi.provider.experimental import component_provider_host

from components import COMPONENTS, PACKAGE_NAME

if __name__ == "__main__":
    component_provider_host(COMPONENTS, PACKAGE_NAME, version="0.1.0")
