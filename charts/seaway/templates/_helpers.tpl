{{/*
Names and labels shared by every template.
*/}}

{{- define "seaway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every resource: the release name, with the chart name appended unless
the release name already contains it ("seaway" for `helm install seaway ...`).
*/}}
{{- define "seaway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "seaway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The standard app.kubernetes.io labels of every object of the release. */}}
{{- define "seaway.labels" -}}
helm.sh/chart: {{ include "seaway.chart" . }}
{{ include "seaway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: seaway
{{- end }}

{{/* The labels selecting the operator's Pods (never change on upgrade). */}}
{{- define "seaway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "seaway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "seaway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "seaway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. Argument: an image value. */}}
{{- define "seaway.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "seaway.operatorImage" -}}
{{- include "seaway.imageRef" (list .Values.image .) }}
{{- end }}

{{- define "seaway.serverImage" -}}
{{- include "seaway.imageRef" (list .Values.serverImage .) }}
{{- end }}

{{/*
Namespaces where the operator may get Secrets: rbac.secretReadNamespaces plus, in namespaced
mode, every watched namespace. Never cluster-wide. Returns a JSON list.
*/}}
{{- define "seaway.secretNamespaces" -}}
{{- concat .Values.rbac.secretReadNamespaces .Values.watchNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
A generated file of files/crds/ (one document) with the release's labels, and the keep policy
when crds.keep is set. Arguments: (list $root "file name").
*/}}
{{- define "seaway.generatedObject" -}}
{{- $root := index . 0 }}
{{- $object := index . 1 }}
{{- $meta := $object.metadata }}
{{- $labels := merge (dict) (fromYaml (include "seaway.labels" $root)) ($meta.labels | default (dict)) }}
{{- $_ := set $meta "labels" $labels }}
{{- if $root.Values.crds.keep }}
{{- $annotations := $meta.annotations | default (dict) }}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" }}
{{- $_ := set $meta "annotations" $annotations }}
{{- end }}
{{- toYaml $object }}
{{- end }}
