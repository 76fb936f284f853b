"""A simulated site: synthetic session traffic, the live demo, load and generated
histories, so the service can be seen and measured without a real one."""
