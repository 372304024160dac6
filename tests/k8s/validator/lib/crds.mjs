// JSON Schemas of the custom resources our manifests use that kubernetes-models does
// not ship: the CSI snapshot kinds (external-snapshotter's CRDs, snapshot.storage.k8s.io
// v1 and groupsnapshot.storage.k8s.io v1beta1). Standard parts (ObjectMeta,
// LabelSelector) are left as bare objects here and checked by kubernetes-models'
// validators at the paths listed in `models`. Every object schema lists its properties:
// the unknown-field check flags whatever a schema does not read (schema.mjs).
import { LabelSelector, ObjectMeta } from '@kubernetes-models/apimachinery/apis/meta/v1';

const string = { type: 'string' };
const boolean = { type: 'boolean' };
const object = { type: 'object' };
const stringMap = { type: 'object', additionalProperties: string };
const deletionPolicy = { type: 'string', enum: ['Delete', 'Retain'] };
const snapshotError = {
  type: 'object', properties: { message: string, time: string },
};

function resource(properties, required) {
  return {
    type: 'object',
    required: ['apiVersion', 'kind', ...required],
    properties: { apiVersion: string, kind: string, metadata: object, ...properties },
  };
}

const metadataModel = { path: ['metadata'], model: ObjectMeta };

// A class: driver and deletion policy at the top level, no spec.
const snapshotClass = {
  schema: resource({ driver: string, deletionPolicy, parameters: stringMap },
    ['driver', 'deletionPolicy']),
  models: [metadataModel],
};

export const crds = {
  'snapshot.storage.k8s.io/v1|VolumeSnapshot': {
    schema: resource({
      spec: {
        type: 'object', required: ['source'],
        properties: {
          source: {
            type: 'object',
            properties: { persistentVolumeClaimName: string, volumeSnapshotContentName: string },
          },
          volumeSnapshotClassName: string,
        },
      },
      status: {
        type: 'object',
        properties: {
          boundVolumeSnapshotContentName: string, creationTime: string, error: snapshotError,
          readyToUse: boolean, restoreSize: { type: ['string', 'integer'] },
          volumeGroupSnapshotName: string,
        },
      },
    }, ['spec']),
    models: [metadataModel],
  },
  'snapshot.storage.k8s.io/v1|VolumeSnapshotClass': snapshotClass,
  'snapshot.storage.k8s.io/v1|VolumeSnapshotContent': {
    schema: resource({
      spec: {
        type: 'object', required: ['deletionPolicy', 'driver', 'source', 'volumeSnapshotRef'],
        properties: {
          deletionPolicy, driver: string,
          source: { type: 'object', properties: { snapshotHandle: string, volumeHandle: string } },
          sourceVolumeMode: { type: 'string', enum: ['Block', 'Filesystem'] },
          volumeSnapshotClassName: string,
          volumeSnapshotRef: {
            type: 'object',
            properties: {
              apiVersion: string, fieldPath: string, kind: string, name: string,
              namespace: string, resourceVersion: string, uid: string,
            },
          },
        },
      },
      status: {
        type: 'object',
        properties: {
          creationTime: { type: 'integer' }, error: snapshotError, readyToUse: boolean,
          restoreSize: { type: 'integer' }, snapshotHandle: string,
          volumeGroupSnapshotHandle: string,
        },
      },
    }, ['spec']),
    models: [metadataModel],
  },
  'groupsnapshot.storage.k8s.io/v1beta1|VolumeGroupSnapshot': {
    schema: resource({
      spec: {
        type: 'object', required: ['source'],
        properties: {
          source: {
            type: 'object',
            properties: { selector: object, volumeGroupSnapshotContentName: string },
          },
          volumeGroupSnapshotClassName: string,
        },
      },
      status: {
        type: 'object',
        properties: {
          boundVolumeGroupSnapshotContentName: string, creationTime: string,
          error: snapshotError, readyToUse: boolean,
        },
      },
    }, ['spec']),
    models: [metadataModel, { path: ['spec', 'source', 'selector'], model: LabelSelector }],
  },
  'groupsnapshot.storage.k8s.io/v1beta1|VolumeGroupSnapshotClass': snapshotClass,
};
