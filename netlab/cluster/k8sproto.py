"""Kubernetes protobuf request bodies: the envelope and the messages kubectl's generators send.

`kubectl create namespace|configmap|secret|deployment|service ...` encode their object with
client-go's protobuf serializer: the 4 bytes `k8s\\x00`, then a `runtime.Unknown` message
(1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType) whose `raw` is
the object's own message. `decode_body` turns that into the JSON object kubectl would have
sent with `-o json`, so the rest of the apiserver never knows the difference.

The table below is the part of Kubernetes' published protobuf API (field numbers from the
`generated.proto` files of k8s.io/api and k8s.io/apimachinery) that those objects reach: the
kinds this apiserver serves (namespaces, configmaps, secrets, pods, services, deployments,
replicasets, and the ones node agents and controllers write: nodes, endpoints,
endpointslices, events, leases) with their specs and statuses, down to containers, probes,
volumes of the common kinds, affinity and security contexts. A kind or field that is not here
(a rare volume source, ephemeral containers, managed fields, a field newer than the table) is
refused with 415 by the caller, naming it, never dropped: the client can send JSON instead.

Field syntax, one message per line, fields separated by commas: `NUMBER NAME TYPE`, where
TYPE is a scalar (`string`, `int32`, `int64`, `bool`, `bytes`), `Time`, `IntOrString`,
`Quantity` or a message name, prefixed by `[]` (repeated), `{}` (map<string, TYPE>), `*`
(a Go pointer: zero values are kept) or `^` (an embedded struct whose fields are inlined).
"""

from __future__ import annotations

from typing import Any

from netlab.cluster import protowire
from netlab.cluster.protowire import DecodeError, Field, UnknownField

MAGIC = b"k8s\x00"

_MESSAGES = """
ObjectMeta: 1 name string, 2 generateName string, 3 namespace string, 4 selfLink string,
  5 uid string, 6 resourceVersion string, 7 generation int64, 8 creationTimestamp Time,
  9 deletionTimestamp *Time, 10 deletionGracePeriodSeconds *int64, 11 labels {}string,
  12 annotations {}string, 13 ownerReferences []OwnerReference, 14 finalizers []string
OwnerReference: 1 kind string, 3 name string, 4 uid string, 5 apiVersion string,
  6 controller *bool, 7 blockOwnerDeletion *bool
LabelSelector: 1 matchLabels {}string, 2 matchExpressions []LabelSelectorRequirement
LabelSelectorRequirement: 1 key string, 2 operator string, 3 values []string
Condition: 1 type string, 2 status string, 3 observedGeneration int64, 4 lastTransitionTime Time,
  5 reason string, 6 message string

Namespace: 1 metadata ObjectMeta, 2 spec NamespaceSpec, 3 status NamespaceStatus
NamespaceSpec: 1 finalizers []string
NamespaceStatus: 1 phase string, 2 conditions []NamespaceCondition
NamespaceCondition: 1 type string, 2 status string, 4 lastTransitionTime Time, 5 reason string,
  6 message string

ConfigMap: 1 metadata ObjectMeta, 2 data {}string, 3 binaryData {}bytes, 4 immutable *bool
Secret: 1 metadata ObjectMeta, 2 data {}bytes, 3 type string, 4 stringData {}string,
  5 immutable *bool

Pod: 1 metadata ObjectMeta, 2 spec PodSpec, 3 status PodStatus
PodTemplateSpec: 1 metadata ObjectMeta, 2 spec PodSpec
PodSpec: 1 volumes []Volume, 2 containers []Container, 3 restartPolicy string,
  4 terminationGracePeriodSeconds *int64, 5 activeDeadlineSeconds *int64, 6 dnsPolicy string,
  7 nodeSelector {}string, 8 serviceAccountName string, 9 serviceAccount string,
  10 nodeName string, 11 hostNetwork bool, 12 hostPID bool, 13 hostIPC bool,
  14 securityContext PodSecurityContext, 15 imagePullSecrets []LocalObjectReference,
  16 hostname string, 17 subdomain string, 18 affinity Affinity, 19 schedulerName string,
  20 initContainers []Container, 21 automountServiceAccountToken *bool,
  22 tolerations []Toleration, 23 hostAliases []HostAlias, 24 priorityClassName string,
  25 priority *int32, 26 dnsConfig PodDNSConfig, 27 shareProcessNamespace *bool,
  28 readinessGates []PodReadinessGate, 29 runtimeClassName *string,
  30 enableServiceLinks *bool, 31 preemptionPolicy *string, 32 overhead {}Quantity,
  33 topologySpreadConstraints []TopologySpreadConstraint, 35 setHostnameAsFQDN *bool,
  36 os PodOS, 37 hostUsers *bool, 38 schedulingGates []PodSchedulingGate
PodStatus: 1 phase string, 2 conditions []PodCondition, 3 message string, 4 reason string,
  5 hostIP string, 6 podIP string, 7 startTime *Time, 9 qosClass string,
  11 nominatedNodeName string, 12 podIPs []PodIP
PodCondition: 1 type string, 2 status string, 3 lastProbeTime Time, 4 lastTransitionTime Time,
  5 reason string, 6 message string
PodIP: 1 ip string
PodOS: 1 name string
PodSchedulingGate: 1 name string
PodReadinessGate: 1 conditionType string
PodDNSConfig: 1 nameservers []string, 2 searches []string, 3 options []PodDNSConfigOption
PodDNSConfigOption: 1 name string, 2 value *string
HostAlias: 1 ip string, 2 hostnames []string
Toleration: 1 key string, 2 operator string, 3 value string, 4 effect string,
  5 tolerationSeconds *int64
TopologySpreadConstraint: 1 maxSkew int32, 2 topologyKey string, 3 whenUnsatisfiable string,
  4 labelSelector LabelSelector, 5 minDomains *int32, 6 nodeAffinityPolicy *string,
  7 nodeTaintsPolicy *string, 8 matchLabelKeys []string
LocalObjectReference: 1 name string

Container: 1 name string, 2 image string, 3 command []string, 4 args []string,
  5 workingDir string, 6 ports []ContainerPort, 7 env []EnvVar,
  8 resources ResourceRequirements, 9 volumeMounts []VolumeMount, 10 livenessProbe Probe,
  11 readinessProbe Probe, 12 lifecycle Lifecycle, 13 terminationMessagePath string,
  14 imagePullPolicy string, 15 securityContext SecurityContext, 16 stdin bool,
  17 stdinOnce bool, 18 tty bool, 19 envFrom []EnvFromSource,
  20 terminationMessagePolicy string, 21 volumeDevices []VolumeDevice, 22 startupProbe Probe,
  23 resizePolicy []ContainerResizePolicy, 24 restartPolicy *string
ContainerPort: 1 name string, 2 hostPort int32, 3 containerPort int32, 4 protocol string,
  5 hostIP string
ContainerResizePolicy: 1 resourceName string, 2 restartPolicy string
EnvVar: 1 name string, 2 value string, 3 valueFrom EnvVarSource
EnvVarSource: 1 fieldRef ObjectFieldSelector, 2 resourceFieldRef ResourceFieldSelector,
  3 configMapKeyRef KeySelector, 4 secretKeyRef KeySelector
ObjectFieldSelector: 1 apiVersion string, 2 fieldPath string
ResourceFieldSelector: 1 containerName string, 2 resource string, 3 divisor Quantity
KeySelector: 1 ref ^LocalObjectReference, 2 key string, 3 optional *bool
EnvFromSource: 1 prefix string, 2 configMapRef EnvSource, 3 secretRef EnvSource
EnvSource: 1 ref ^LocalObjectReference, 2 optional *bool
ResourceRequirements: 1 limits {}Quantity, 2 requests {}Quantity, 3 claims []ResourceClaim
ResourceClaim: 1 name string, 2 request string
VolumeMount: 1 name string, 2 readOnly bool, 3 mountPath string, 4 subPath string,
  5 mountPropagation *string, 6 subPathExpr string, 7 recursiveReadOnly *string
VolumeDevice: 1 name string, 2 devicePath string
Probe: 1 handler ^ProbeHandler, 2 initialDelaySeconds int32, 3 timeoutSeconds int32,
  4 periodSeconds int32, 5 successThreshold int32, 6 failureThreshold int32,
  7 terminationGracePeriodSeconds *int64
ProbeHandler: 1 exec ExecAction, 2 httpGet HTTPGetAction, 3 tcpSocket TCPSocketAction,
  4 grpc GRPCAction
Lifecycle: 1 postStart LifecycleHandler, 2 preStop LifecycleHandler
LifecycleHandler: 1 exec ExecAction, 2 httpGet HTTPGetAction, 3 tcpSocket TCPSocketAction,
  4 sleep SleepAction
ExecAction: 1 command []string
HTTPGetAction: 1 path string, 2 port IntOrString, 3 host string, 4 scheme string,
  5 httpHeaders []HTTPHeader
HTTPHeader: 1 name string, 2 value string
TCPSocketAction: 1 port IntOrString, 2 host string
GRPCAction: 1 port int32, 2 service *string
SleepAction: 1 seconds int64
SecurityContext: 1 capabilities Capabilities, 2 privileged *bool, 3 seLinuxOptions SELinuxOptions,
  4 runAsUser *int64, 5 runAsNonRoot *bool, 6 readOnlyRootFilesystem *bool,
  7 allowPrivilegeEscalation *bool, 8 runAsGroup *int64, 9 procMount *string,
  10 windowsOptions WindowsSecurityContextOptions, 11 seccompProfile SeccompProfile
PodSecurityContext: 1 seLinuxOptions SELinuxOptions, 2 runAsUser *int64, 3 runAsNonRoot *bool,
  4 supplementalGroups []int64, 5 fsGroup *int64, 6 runAsGroup *int64, 7 sysctls []Sysctl,
  8 windowsOptions WindowsSecurityContextOptions, 9 fsGroupChangePolicy *string,
  10 seccompProfile SeccompProfile
Capabilities: 1 add []string, 2 drop []string
SELinuxOptions: 1 user string, 2 role string, 3 type string, 4 level string
SeccompProfile: 1 type string, 2 localhostProfile *string
WindowsSecurityContextOptions: 1 gmsaCredentialSpecName *string, 2 gmsaCredentialSpec *string,
  3 runAsUserName *string, 4 hostProcess *bool
Sysctl: 1 name string, 2 value string

Volume: 1 name string, 2 source ^VolumeSource
VolumeSource: 1 hostPath HostPathVolumeSource, 2 emptyDir EmptyDirVolumeSource,
  6 secret SecretVolumeSource, 10 persistentVolumeClaim PersistentVolumeClaimVolumeSource,
  16 downwardAPI DownwardAPIVolumeSource, 19 configMap ConfigMapVolumeSource
HostPathVolumeSource: 1 path string, 2 type *string
EmptyDirVolumeSource: 1 medium string, 2 sizeLimit *Quantity
SecretVolumeSource: 1 secretName string, 2 items []KeyToPath, 3 defaultMode *int32,
  4 optional *bool
ConfigMapVolumeSource: 1 ref ^LocalObjectReference, 2 items []KeyToPath, 3 defaultMode *int32,
  4 optional *bool
KeyToPath: 1 key string, 2 path string, 3 mode *int32
PersistentVolumeClaimVolumeSource: 1 claimName string, 2 readOnly bool
DownwardAPIVolumeSource: 1 items []DownwardAPIVolumeFile, 2 defaultMode *int32
DownwardAPIVolumeFile: 1 path string, 2 fieldRef ObjectFieldSelector,
  3 resourceFieldRef ResourceFieldSelector, 4 mode *int32

Affinity: 1 nodeAffinity NodeAffinity, 2 podAffinity PodAffinity, 3 podAntiAffinity PodAffinity
NodeAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution NodeSelector,
  2 preferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm
NodeSelector: 1 nodeSelectorTerms []NodeSelectorTerm
NodeSelectorTerm: 1 matchExpressions []NodeSelectorRequirement,
  2 matchFields []NodeSelectorRequirement
NodeSelectorRequirement: 1 key string, 2 operator string, 3 values []string
PreferredSchedulingTerm: 1 weight int32, 2 preference NodeSelectorTerm
PodAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm,
  2 preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm
PodAffinityTerm: 1 labelSelector LabelSelector, 2 namespaces []string, 3 topologyKey string,
  4 namespaceSelector LabelSelector, 5 matchLabelKeys []string, 6 mismatchLabelKeys []string
WeightedPodAffinityTerm: 1 weight int32, 2 podAffinityTerm PodAffinityTerm

Service: 1 metadata ObjectMeta, 2 spec ServiceSpec, 3 status ServiceStatus
ServiceSpec: 1 ports []ServicePort, 2 selector {}string, 3 clusterIP string, 4 type string,
  5 externalIPs []string, 7 sessionAffinity string, 8 loadBalancerIP string,
  9 loadBalancerSourceRanges []string, 10 externalName string,
  11 externalTrafficPolicy string, 12 healthCheckNodePort int32,
  13 publishNotReadyAddresses bool, 14 sessionAffinityConfig SessionAffinityConfig,
  17 ipFamilyPolicy *string, 18 clusterIPs []string, 19 ipFamilies []string,
  20 allocateLoadBalancerNodePorts *bool, 21 loadBalancerClass *string,
  22 internalTrafficPolicy *string, 23 trafficDistribution *string
ServicePort: 1 name string, 2 protocol string, 3 port int32, 4 targetPort IntOrString,
  5 nodePort int32, 6 appProtocol *string
SessionAffinityConfig: 1 clientIP ClientIPConfig
ClientIPConfig: 1 timeoutSeconds *int32
ServiceStatus: 1 loadBalancer LoadBalancerStatus, 2 conditions []Condition
LoadBalancerStatus: 1 ingress []LoadBalancerIngress
LoadBalancerIngress: 1 ip string, 2 hostname string, 3 ipMode *string, 4 ports []PortStatus
PortStatus: 1 port int32, 2 protocol string, 3 error *string

ObjectReference: 1 kind string, 2 namespace string, 3 name string, 4 uid string,
  5 apiVersion string, 6 resourceVersion string, 7 fieldPath string

Endpoints: 1 metadata ObjectMeta, 2 subsets []EndpointSubset
EndpointSubset: 1 addresses []EndpointAddress, 2 notReadyAddresses []EndpointAddress,
  3 ports []EndpointPort
EndpointAddress: 1 ip string, 2 targetRef ObjectReference, 3 hostname string,
  4 nodeName *string
EndpointPort: 1 name string, 2 port int32, 3 protocol string, 4 appProtocol *string

EndpointSlice: 1 metadata ObjectMeta, 2 endpoints []Endpoint, 3 ports []EndpointSlicePort,
  4 addressType string
Endpoint: 1 addresses []string, 2 conditions EndpointConditions, 3 hostname *string,
  4 targetRef ObjectReference, 6 nodeName *string, 7 zone *string
EndpointConditions: 1 ready *bool, 2 serving *bool, 3 terminating *bool
EndpointSlicePort: 1 name *string, 2 protocol *string, 3 port *int32, 4 appProtocol *string

Event: 1 metadata ObjectMeta, 2 involvedObject ObjectReference, 3 reason string,
  4 message string, 5 source EventSource, 6 firstTimestamp Time, 7 lastTimestamp Time,
  8 count int32, 9 type string, 10 eventTime MicroTime, 11 series EventSeries, 12 action string,
  13 related ObjectReference, 14 reportingComponent string, 15 reportingInstance string
EventSource: 1 component string, 2 host string
EventSeries: 1 count int32, 2 lastObservedTime MicroTime

Lease: 1 metadata ObjectMeta, 2 spec LeaseSpec
LeaseSpec: 1 holderIdentity *string, 2 leaseDurationSeconds *int32, 3 acquireTime *MicroTime,
  4 renewTime *MicroTime, 5 leaseTransitions *int32

Node: 1 metadata ObjectMeta, 2 spec NodeSpec, 3 status NodeStatus
NodeSpec: 1 podCIDR string, 2 externalID string, 3 providerID string, 4 unschedulable bool,
  5 taints []Taint, 7 podCIDRs []string
Taint: 1 key string, 2 value string, 3 effect string, 4 timeAdded *Time
NodeStatus: 1 capacity {}Quantity, 2 allocatable {}Quantity, 3 phase string,
  4 conditions []NodeCondition, 5 addresses []NodeAddress,
  6 daemonEndpoints NodeDaemonEndpoints, 7 nodeInfo NodeSystemInfo, 8 images []ContainerImage,
  9 volumesInUse []string, 10 volumesAttached []AttachedVolume
NodeCondition: 1 type string, 2 status string, 3 lastHeartbeatTime Time,
  4 lastTransitionTime Time, 5 reason string, 6 message string
NodeAddress: 1 type string, 2 address string
NodeDaemonEndpoints: 1 kubeletEndpoint DaemonEndpoint
DaemonEndpoint: 1 Port int32
NodeSystemInfo: 1 machineID string, 2 systemUUID string, 3 bootID string,
  4 kernelVersion string, 5 osImage string, 6 containerRuntimeVersion string,
  7 kubeletVersion string, 8 kubeProxyVersion string, 9 operatingSystem string,
  10 architecture string
ContainerImage: 1 names []string, 2 sizeBytes int64
AttachedVolume: 1 name string, 2 devicePath string

Deployment: 1 metadata ObjectMeta, 2 spec DeploymentSpec, 3 status DeploymentStatus
DeploymentSpec: 1 replicas *int32, 2 selector LabelSelector, 3 template PodTemplateSpec,
  4 strategy DeploymentStrategy, 5 minReadySeconds int32, 6 revisionHistoryLimit *int32,
  7 paused bool, 9 progressDeadlineSeconds *int32
DeploymentStrategy: 1 type string, 2 rollingUpdate RollingUpdateDeployment
RollingUpdateDeployment: 1 maxUnavailable *IntOrString, 2 maxSurge *IntOrString
DeploymentStatus: 1 observedGeneration int64, 2 replicas int32, 3 updatedReplicas int32,
  4 availableReplicas int32, 5 unavailableReplicas int32, 6 conditions []DeploymentCondition,
  7 readyReplicas int32, 8 collisionCount *int32
DeploymentCondition: 1 type string, 2 status string, 4 reason string, 5 message string,
  6 lastUpdateTime Time, 7 lastTransitionTime Time

ReplicaSet: 1 metadata ObjectMeta, 2 spec ReplicaSetSpec, 3 status ReplicaSetStatus
ReplicaSetSpec: 1 replicas *int32, 2 selector LabelSelector, 3 template PodTemplateSpec,
  4 minReadySeconds int32
ReplicaSetStatus: 1 replicas int32, 2 fullyLabeledReplicas int32, 3 observedGeneration int64,
  4 readyReplicas int32, 5 availableReplicas int32, 6 conditions []ReplicaSetCondition
ReplicaSetCondition: 1 type string, 2 status string, 3 lastTransitionTime Time, 4 reason string,
  5 message string
"""

# (apiVersion, kind) -> the object's message
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "Pod"): "Pod",
    ("v1", "Service"): "Service",
    ("apps/v1", "Deployment"): "Deployment",
    ("apps/v1", "ReplicaSet"): "ReplicaSet",
    ("v1", "Endpoints"): "Endpoints",
    ("v1", "Event"): "Event",
    ("v1", "Node"): "Node",
    ("discovery.k8s.io/v1", "EndpointSlice"): "EndpointSlice",
    ("coordination.k8s.io/v1", "Lease"): "Lease",
}


def parse_schema(text: str) -> dict[str, dict[int, Field]]:
    """The message table from its compact text form (see the module docstring)."""
    schema: dict[str, dict[int, Field]] = {}
    for line in " ".join(text.split("\n  ")).splitlines():
        if not line.strip():
            continue
        message, _, body = line.partition(":")
        fields: dict[int, Field] = {}
        for item in body.split(","):
            number, name, spec = item.split()
            repeated, is_map = spec.startswith("[]"), spec.startswith("{}")
            spec = spec[2:] if repeated or is_map else spec
            pointer, inline = spec.startswith("*"), spec.startswith("^")
            spec = spec.lstrip("*^")
            fields[int(number)] = Field(name, spec, repeated, is_map, pointer, inline)
        schema[message.strip()] = fields
    return schema


SCHEMA: dict[str, dict[int, Field]] = parse_schema(_MESSAGES)


class Unsupported(Exception):
    """The body is well-formed but uses a kind or field this apiserver cannot decode."""


def _envelope(data: bytes) -> tuple[str, str, bytes, str]:
    """(apiVersion, kind, raw, contentEncoding) of the `runtime.Unknown` after the prefix."""
    if not data.startswith(MAGIC):
        raise DecodeError("it does not start with the Kubernetes protobuf prefix 'k8s\\x00'")
    api_version = kind = encoding = ""
    raw = b""
    for number, wire, value in protowire.iter_fields(data[len(MAGIC) :]):
        if wire != protowire.LEN or not isinstance(value, bytes):
            raise DecodeError(f"field {number} of the envelope is not length-delimited")
        if number == 1:
            for n, w, v in protowire.iter_fields(value):
                if w != protowire.LEN or not isinstance(v, bytes):
                    raise DecodeError(f"field {n} of the envelope's typeMeta is not length-delimited")
                if n == 1:
                    api_version = v.decode(errors="replace")
                elif n == 2:
                    kind = v.decode(errors="replace")
        elif number == 2:
            raw = value
        elif number == 3:
            encoding = value.decode(errors="replace")
        # 4 is contentType: the request's Content-Type already said protobuf
    return api_version, kind, raw, encoding


def decode_body(data: bytes) -> dict[str, Any]:
    """The JSON object of a Kubernetes protobuf body.

    Raises DecodeError for malformed bytes and Unsupported for a kind, field or encoding
    outside the table.
    """
    api_version, kind, raw, encoding = _envelope(data)
    if encoding:
        raise Unsupported(f"content encoding {encoding!r} of the {kind} is not supported")
    message = KINDS.get((api_version, kind))
    if message is None:
        raise Unsupported(
            f"this apiserver cannot decode protobuf bodies of kind {kind or '?'} "
            f"({api_version or 'no apiVersion'})"
        )
    try:
        obj = protowire.decode(SCHEMA, message, raw)
    except UnknownField as e:
        where = f" (at {e.path})" if e.path else ""
        raise Unsupported(
            f"the protobuf {kind} has field {e.number} of {e.message}{where}, "
            "which this apiserver does not know"
        ) from None
    return {"kind": kind, "apiVersion": api_version, **obj}
