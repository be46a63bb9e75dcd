"""Operations: provisioning, health checks (doctor), wipe and config checks, run by an installer or an admin."""
