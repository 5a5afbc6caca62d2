"""What Sortie's tests and benches share, so that neither imports the other: throwaway
`redis-server`s (single, Cluster, Sentinel), a simulated workstation fleet, the one
orchestrator settings builder and the one way to await a condition (`wait_until`)."""
