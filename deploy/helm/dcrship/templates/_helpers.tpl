{{/* The release's full name, within the 63 characters of a label. */}}
{{- define "dcrship.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dcrship.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dcrship.labels" -}}
{{ include "dcrship.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dcrship.serviceAccountName" -}}
{{- default (include "dcrship.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "dcrship.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Pod metadata both modes share: workload identity, the config's checksum (a changed
     ConfigMap rolls the pods), scrape annotations. */}}
{{- define "dcrship.podMetadata" -}}
labels:
  {{- include "dcrship.selectorLabels" . | nindent 2 }}
  azure.workload.identity/use: "true"
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include "dcrship.config" . | sha256sum }}
  {{- if eq .Values.mode "sidecar" }}
  # Only dcrship needs the token; keep it out of the app container.
  azure.workload.identity/skip-containers: {{ .Values.sidecar.app.name | quote }}
  {{- end }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* agent.toml (every key is documented in agent.toml.example). */}}
{{- define "dcrship.config" -}}
[agent]
state_dir = "/var/lib/dcrship"
# On the pod IP, for the kubelet's probes and for Prometheus.
http_listen = {{ printf "0.0.0.0:%v" .Values.agent.port | quote }}
shutdown_timeout = {{ .Values.agent.shutdownTimeout | quote }}

[auth]
# AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_AUTHORITY_HOST and AZURE_FEDERATED_TOKEN_FILE are
# injected by the workload identity webhook.
method = "workload-identity"

[outputs.logs]
endpoint = {{ required "azure.endpoint is required" .Values.azure.endpoint | quote }}
dcr = {{ required "azure.dcr is required" .Values.azure.dcr | quote }}
stream = {{ required "azure.stream is required" .Values.azure.stream | quote }}
{{- if eq .Values.mode "daemonset" }}

[inputs.pods]
type = "file"
paths = {{ toJson .Values.daemonset.paths }}
exclude = {{ toJson (append .Values.daemonset.exclude (printf "/var/log/containers/*_%s_*.log" .Release.Namespace)) }}
format = {{ .Values.daemonset.format | quote }}
start_at = {{ .Values.daemonset.startAt | quote }}
output = "logs"

[inputs.pods.container]
runtime = {{ .Values.daemonset.runtime | quote }}
{{- if eq .Values.daemonset.format "json" }}
json_fields = {{ .Values.daemonset.jsonFields | quote }}
{{- end }}

[inputs.pods.fields]
# The node, as in ContainerLogV2 (the pod's own host name is its pod name).
Computer = "${NODE_NAME}"
{{- else }}

[inputs.app]
type = "file"
paths = {{ toJson .Values.sidecar.paths }}
format = {{ .Values.sidecar.format | quote }}
# The volume is new with the pod: everything in it is this pod's.
start_at = "beginning"
output = "logs"
{{- end }}

[spool]
max_bytes = {{ .Values.agent.spoolMaxBytes | quote }}
{{- with .Values.agent.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

{{/* The dcrship container, for both modes; `security` is its securityContext. */}}
{{- define "dcrship.container" -}}
- name: dcrship
  image: {{ include "dcrship.image" .root | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  # The image's entrypoint is `dcrship run`.
  args: ["--config", "/etc/dcrship/agent.toml", "--log-format", "json"]
  env:
    - name: RUST_LOG
      value: {{ .root.Values.agent.logLevel | quote }}
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    {{- with .root.Values.azure.tenantId }}
    - name: AZURE_TENANT_ID
      value: {{ . | quote }}
    {{- end }}
  ports:
    - name: metrics
      containerPort: {{ .root.Values.agent.port }}
      protocol: TCP
  {{- with .root.Values.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .readiness }}
  {{- with .root.Values.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  securityContext:
    {{- toYaml .security | nindent 4 }}
  resources:
    {{- toYaml .root.Values.resources | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/dcrship
      readOnly: true
    - name: state
      mountPath: /var/lib/dcrship
    {{- range .mounts }}
    - {{ toYaml . | nindent 6 | trim }}
    {{- end }}
{{- end -}}
