/* mustdropvqa's MQTT publisher (gst/mdv-mqtt.c, built with libmosquitto):
 * each answer's JSON line goes to one topic with QoS 1, in order.
 *
 * Answers wait in a bounded queue of their own; one at a time is handed to
 * libmosquitto and the next only when the broker has acknowledged it
 * (PUBACK), so the order holds across reconnections (libmosquitto sends the
 * unacknowledged one again after reconnecting). While the broker is away
 * the queue fills; beyond its bound the oldest waiting answer is dropped and
 * counted. Publishing never waits on the network: libmosquitto's own thread
 * connects, reconnects (with a growing delay) and writes. */
#ifndef MDV_MQTT_H
#define MDV_MQTT_H

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _MdvMqtt MdvMqtt;

typedef struct
{
  guint64 published;            /* acknowledged by the broker */
  guint64 dropped;              /* the queue was full, or the run ended */
  guint queued;                 /* waiting, plus the one unacknowledged */
} MdvMqttCounts;

/* Starts connecting to the broker of `uri`,
 * "mqtt://[user[:password]@]host[:port]" (port 1883 by default), in the
 * background; a broker that is down is no error (answers wait in the queue,
 * at most max_queued). The topic is `topic_pattern` with {host} and {stream}
 * replaced by `host` and `stream` (the MQTT wildcards '+' and '#' and the
 * level separator '/' in them become '_'). NULL with *error (a sentence,
 * cause first, no final period) for what will not get better by waiting: a
 * malformed URI, TLS (mqtts://, not supported), a topic one cannot publish
 * to, a host name that does not resolve, a plugin built without
 * libmosquitto. Warnings (broker lost, not reachable) are posted on
 * `owner`. client_id NULL: libmosquitto picks one. */
MdvMqtt *mdv_mqtt_start (GstElement * owner, const gchar * uri,
    const gchar * topic_pattern, const gchar * host, const gchar * stream,
    const gchar * client_id, guint max_queued, gchar ** error);

/* Queues one answer (copied); never waits on the network. */
void mdv_mqtt_publish (MdvMqtt * m, const gchar * payload);

void mdv_mqtt_counts (MdvMqtt * m, MdvMqttCounts * counts);

/* Waits up to timeout_us for the queue to empty; TRUE when it did. */
gboolean mdv_mqtt_flush (MdvMqtt * m, gint64 timeout_us);

/* Disconnects and frees m; what is still queued is counted as dropped.
 * The final counts go to *counts (may be NULL). */
void mdv_mqtt_stop (MdvMqtt * m, MdvMqttCounts * counts);

G_END_DECLS

#endif
