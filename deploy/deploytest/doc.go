// Package deploytest holds no production code: its tests check the deployment
// kit of the repository (docker-compose files, the aviso-server configuration
// they mount, the Dockerfile, the Helm chart in deploy/helm/aviso-bridge, the
// Grafana dashboard and the Prometheus rules) against what the bridge and the
// services around it accept.
package deploytest
