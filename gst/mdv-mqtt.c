/* mustdropvqa's MQTT publisher (mdv-mqtt.h): libmosquitto, QoS 1, one
 * answer in flight at a time, a bounded queue of our own for the rest.
 *
 * Why one in flight: libmosquitto keeps an unacknowledged QoS 1 message
 * across a reconnection and sends it again after CONNACK, but the
 * connect callback (where queued answers would be handed over) can run
 * before that resend; with a single message in flight nothing can overtake
 * it. Answers come at most a few per second per element, far below what
 * one round trip per answer allows even across a WAN.
 *
 * Locks: m->lock guards the queue, the counters and the connection state.
 * libmosquitto's callbacks run on its network thread and take m->lock; no
 * GStreamer message is posted while holding it (a sync bus handler may read
 * the counters). */
#include <errno.h>
#include <mosquitto.h>
#include <string.h>

#include "mdv-mqtt.h"

GST_DEBUG_CATEGORY_EXTERN (mustdrop_vqa_debug);
#define GST_CAT_DEFAULT mustdrop_vqa_debug

#define MDV_MQTT_PORT 1883
#define MDV_MQTT_KEEPALIVE_S 30
/* reconnection attempts: after 1 s, doubling up to 8 s */
#define MDV_MQTT_RETRY_MIN_S 1
#define MDV_MQTT_RETRY_MAX_S 8

struct _MdvMqtt
{
  GstElement *owner;
  struct mosquitto *mosq;
  gchar *broker;                /* host:port, for messages */
  gchar *topic;
  guint max_queued;

  GMutex lock;
  GCond cond;                   /* the queue shrank */
  GQueue waiting;               /* gchar* payloads, oldest first */
  gchar *in_flight;             /* handed to libmosquitto, not acknowledged */
  gint in_flight_mid;
  gboolean connected, away_warned, stopping;
  MdvMqttCounts counts;
};

/* libmosquitto's global set-up: once per process, never undone (its cleanup
 * is not safe while another element still publishes). */
static gpointer
lib_init (gpointer unused)
{
  mosquitto_lib_init ();
  return NULL;
}

/* The parts of the URI; FALSE with *error saying what is wrong. */
static gboolean
parse_uri (const gchar * uri, gchar ** host, gint * port,
    gchar ** user, gchar ** password, gchar ** error)
{
  GError *err = NULL;
  GUri *u = g_uri_parse (uri, G_URI_FLAGS_HAS_PASSWORD, &err);
  const gchar *scheme;

  *host = *user = *password = NULL;
  if (!u) {
    *error = g_strdup_printf ("mqtt-uri \"%s\" is not a URI (%s); expected "
        "mqtt://host[:port]", uri, err->message);
    g_error_free (err);
    return FALSE;
  }
  scheme = g_uri_get_scheme (u);
  if (!g_ascii_strcasecmp (scheme, "mqtts") || !g_ascii_strcasecmp (scheme,
          "ssl"))
    *error = g_strdup_printf ("mqtt-uri \"%s\": TLS (%s://) is not supported; "
        "use mqtt://host[:port] (for a remote broker, through a TLS tunnel or "
        "a local bridge)", uri, scheme);
  else if (g_ascii_strcasecmp (scheme, "mqtt"))
    *error = g_strdup_printf ("mqtt-uri \"%s\": unknown scheme \"%s\"; "
        "expected mqtt://host[:port]", uri, scheme);
  else if (!g_uri_get_host (u) || !*g_uri_get_host (u))
    *error = g_strdup_printf ("mqtt-uri \"%s\" names no host; expected "
        "mqtt://host[:port]", uri);
  else if ((*g_uri_get_path (u) && strcmp (g_uri_get_path (u), "/")) ||
      g_uri_get_query (u) || g_uri_get_fragment (u))
    *error = g_strdup_printf ("mqtt-uri \"%s\" has a path, query or fragment; "
        "expected mqtt://host[:port] (the topic is mqtt-topic)", uri);
  else
    *error = NULL;
  if (!*error) {
    *host = g_strdup (g_uri_get_host (u));
    *port = g_uri_get_port (u) > 0 ? g_uri_get_port (u) : MDV_MQTT_PORT;
    *user = g_strdup (g_uri_get_user (u));
    *password = g_strdup (g_uri_get_password (u));
  }
  g_uri_unref (u);
  return *error == NULL;
}

/* A placeholder's value as one topic level. */
static void
append_level (GString * out, const gchar * value)
{
  for (const gchar * c = value; *c; c++)
    g_string_append_c (out, *c == '+' || *c == '#' || *c == '/' ? '_' : *c);
}

/* The topic (see mdv_mqtt_start); NULL with *error when one cannot publish
 * to it. */
static gchar *
expand_topic (const gchar * pattern, const gchar * host,
    const gchar * stream, gchar ** error)
{
  GString *t = g_string_new (NULL);

  for (const gchar * p = pattern; *p;) {
    if (g_str_has_prefix (p, "{host}")) {
      append_level (t, host);
      p += strlen ("{host}");
    } else if (g_str_has_prefix (p, "{stream}")) {
      append_level (t, stream);
      p += strlen ("{stream}");
    } else {
      g_string_append_c (t, *p++);
    }
  }
  *error = NULL;
  if (!t->len)
    *error = g_strdup ("mqtt-topic is empty");
  else if (t->len > 65535)
    *error = g_strdup ("mqtt-topic is longer than MQTT allows (65535 bytes)");
  else if (mosquitto_validate_utf8 (t->str, (int) t->len) != MOSQ_ERR_SUCCESS)
    *error = g_strdup ("mqtt-topic is not valid UTF-8");
  else if (mosquitto_pub_topic_check (t->str) != MOSQ_ERR_SUCCESS)
    *error = g_strdup_printf ("mqtt-topic \"%s\" has a wildcard ('+' or '#'); "
        "answers are published to one topic", t->str);
  if (*error) {
    g_string_free (t, TRUE);
    return NULL;
  }
  return g_string_free (t, FALSE);
}

/* Hands the oldest waiting answer to libmosquitto when nothing is in flight
 * and the broker is there (lock held). */
static void
send_next_locked (MdvMqtt * m)
{
  while (m->connected && !m->in_flight && !g_queue_is_empty (&m->waiting)) {
    gchar *payload = g_queue_pop_head (&m->waiting);
    gint mid = 0;
    int rc = mosquitto_publish (m->mosq, &mid, m->topic, (int) strlen (payload),
        payload, 1, false);
    if (rc == MOSQ_ERR_SUCCESS) {
      m->in_flight = payload;
      m->in_flight_mid = mid;
    } else if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
      /* the disconnect callback is on its way: send it after reconnecting */
      g_queue_push_head (&m->waiting, payload);
      m->connected = FALSE;
    } else {
      /* the broker's packet limit, out of memory: waiting will not help */
      GST_WARNING_OBJECT (m->owner, "MQTT: dropping an answer of %zu bytes: %s",
          strlen (payload), mosquitto_strerror (rc));
      m->counts.dropped++;
      g_free (payload);
      g_cond_broadcast (&m->cond);
    }
  }
}

static void
warn_away (MdvMqtt * m, const gchar * what, const gchar * why)
{
  GST_ELEMENT_WARNING (m->owner, RESOURCE, WRITE,
      ("%s the MQTT broker at %s: %s; answers wait in a queue (at most %u, "
          "mqtt-queue) until it is back.", what, m->broker, why, m->max_queued),
      ("retrying every %d to %d s", MDV_MQTT_RETRY_MIN_S,
          MDV_MQTT_RETRY_MAX_S));
}

static void
on_connect (struct mosquitto *mosq, void *user, int rc)
{
  MdvMqtt *m = user;
  gboolean refused_first = FALSE;

  g_mutex_lock (&m->lock);
  if (rc == 0) {
    m->connected = TRUE;
    m->away_warned = FALSE;
    send_next_locked (m);
  } else {
    refused_first = !m->away_warned && !m->stopping;
    m->away_warned = TRUE;
  }
  g_mutex_unlock (&m->lock);
  if (rc == 0)
    GST_INFO_OBJECT (m->owner, "MQTT: connected to %s", m->broker);
  else if (refused_first)
    warn_away (m, "Refused by", mosquitto_connack_string (rc));
}

static void
on_disconnect (struct mosquitto *mosq, void *user, int rc)
{
  MdvMqtt *m = user;
  gboolean lost_first;

  g_mutex_lock (&m->lock);
  m->connected = FALSE;
  lost_first = rc != 0 && !m->away_warned && !m->stopping;
  if (lost_first)
    m->away_warned = TRUE;
  g_mutex_unlock (&m->lock);
  if (lost_first)
    warn_away (m, "Lost", "connection closed");
}

static void
on_publish (struct mosquitto *mosq, void *user, int mid)
{
  MdvMqtt *m = user;

  g_mutex_lock (&m->lock);
  if (m->in_flight && mid == m->in_flight_mid) {
    g_clear_pointer (&m->in_flight, g_free);
    m->counts.published++;
    send_next_locked (m);
    g_cond_broadcast (&m->cond);
  }
  g_mutex_unlock (&m->lock);
}

static void
mqtt_free (MdvMqtt * m)
{
  if (m->mosq)
    mosquitto_destroy (m->mosq);
  g_queue_clear_full (&m->waiting, g_free);
  g_free (m->in_flight);
  g_free (m->broker);
  g_free (m->topic);
  g_mutex_clear (&m->lock);
  g_cond_clear (&m->cond);
  g_free (m);
}

/* The client with its callbacks, credentials and retry policy; NULL with
 * *error. */
static struct mosquitto *
client_new (MdvMqtt * m, const gchar * client_id, const gchar * user,
    const gchar * password, gchar ** error)
{
  /* a clean session: a publisher keeps nothing on the broker (what is not
   * acknowledged stays in our queue or in libmosquitto) */
  struct mosquitto *mosq = mosquitto_new (client_id, true, m);
  if (!mosq) {
    *error = g_strdup_printf ("Could not create an MQTT client (%s)",
        g_strerror (errno));
    return NULL;
  }
  /* no mosquitto_threaded_set: mosquitto_loop_start sets it, and refuses a
   * client already marked threaded */
  mosquitto_connect_callback_set (mosq, on_connect);
  mosquitto_disconnect_callback_set (mosq, on_disconnect);
  mosquitto_publish_callback_set (mosq, on_publish);
  mosquitto_reconnect_delay_set (mosq, MDV_MQTT_RETRY_MIN_S,
      MDV_MQTT_RETRY_MAX_S, true);
  if (user && mosquitto_username_pw_set (mosq, user, password)) {
    *error = g_strdup ("mqtt-uri: the user name is not valid UTF-8");
    mosquitto_destroy (mosq);
    return NULL;
  }
  return mosq;
}

MdvMqtt *
mdv_mqtt_start (GstElement * owner, const gchar * uri,
    const gchar * topic_pattern, const gchar * host_name,
    const gchar * stream, const gchar * client_id, guint max_queued,
    gchar ** error)
{
  static GOnce once = G_ONCE_INIT;
  gchar *host, *user, *password, *topic;
  gint port = MDV_MQTT_PORT;

  g_once (&once, lib_init, NULL);
  if (!parse_uri (uri, &host, &port, &user, &password, error))
    return NULL;
  topic = expand_topic (topic_pattern, host_name, stream, error);
  if (!topic) {
    g_free (host);
    g_free (user);
    g_free (password);
    return NULL;
  }
  MdvMqtt *m = g_new0 (MdvMqtt, 1);
  m->owner = owner;
  m->broker = g_strdup_printf (strchr (host, ':') ? "[%s]:%d" : "%s:%d", host,
      port);
  m->topic = topic;
  m->max_queued = MAX (max_queued, 1);
  g_mutex_init (&m->lock);
  g_cond_init (&m->cond);
  g_queue_init (&m->waiting);
  m->mosq = client_new (m, client_id, user, password, error);

  int rc = m->mosq ? mosquitto_connect_async (m->mosq, host, port,
      MDV_MQTT_KEEPALIVE_S) : MOSQ_ERR_INVAL;
  if (m->mosq && rc == MOSQ_ERR_EAI)
    *error = g_strdup_printf ("Could not resolve the MQTT broker's host "
        "\"%s\" (mqtt-uri)", host);
  else if (m->mosq && rc == MOSQ_ERR_INVAL)
    *error = g_strdup_printf ("mqtt-uri \"%s\": libmosquitto refused the host "
        "or port", uri);
  else if (m->mosq && mosquitto_loop_start (m->mosq) != MOSQ_ERR_SUCCESS)
    *error = g_strdup ("Could not start the MQTT network thread");
  g_free (host);
  g_free (user);
  g_free (password);
  if (*error) {
    mqtt_free (m);
    return NULL;
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    /* down at start (refused, unreachable): the network thread retries */
    m->away_warned = TRUE;
    warn_away (m, "Could not reach", rc == MOSQ_ERR_ERRNO ?
        g_strerror (errno) : mosquitto_strerror (rc));
  }
  GST_INFO_OBJECT (owner, "MQTT: publishing to %s on \"%s\", QoS 1",
      m->broker, m->topic);
  return m;
}

void
mdv_mqtt_publish (MdvMqtt * m, const gchar * payload)
{
  g_mutex_lock (&m->lock);
  g_queue_push_tail (&m->waiting, g_strdup (payload));
  /* the one in flight is libmosquitto's now: only waiting ones can go */
  while (g_queue_get_length (&m->waiting) + (m->in_flight ? 1 : 0) >
      m->max_queued && !g_queue_is_empty (&m->waiting)) {
    g_free (g_queue_pop_head (&m->waiting));
    m->counts.dropped++;
  }
  send_next_locked (m);
  g_mutex_unlock (&m->lock);
}

static guint
queued_locked (MdvMqtt * m)
{
  return g_queue_get_length (&m->waiting) + (m->in_flight ? 1 : 0);
}

void
mdv_mqtt_counts (MdvMqtt * m, MdvMqttCounts * counts)
{
  g_mutex_lock (&m->lock);
  *counts = m->counts;
  counts->queued = queued_locked (m);
  g_mutex_unlock (&m->lock);
}

gboolean
mdv_mqtt_flush (MdvMqtt * m, gint64 timeout_us)
{
  gint64 deadline = g_get_monotonic_time () + timeout_us;
  gboolean empty;

  g_mutex_lock (&m->lock);
  while (queued_locked (m) && g_cond_wait_until (&m->cond, &m->lock, deadline));
  empty = queued_locked (m) == 0;
  g_mutex_unlock (&m->lock);
  return empty;
}

void
mdv_mqtt_stop (MdvMqtt * m, MdvMqttCounts * counts)
{
  g_mutex_lock (&m->lock);
  m->stopping = TRUE;
  g_mutex_unlock (&m->lock);
  /* wakes the network thread from a retry delay too */
  mosquitto_disconnect (m->mosq);
  mosquitto_loop_stop (m->mosq, false);
  g_mutex_lock (&m->lock);
  m->counts.dropped += queued_locked (m);
  if (counts)
    *counts = m->counts;
  g_mutex_unlock (&m->lock);
  mqtt_free (m);
}
