// The explorer page: every control turns into a latent z, which the server decodes.
"use strict";
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
let info = null;
let pending = null;   // the latest z waiting to be decoded
let inFlight = false; // one request at a time; the newest z wins
let current = null;   // the z the page shows; every control follows it (setZ)

const $ = (id) => document.getElementById(id);

async function decodeNow() {
  if (inFlight || pending === null) return;
  const z = pending;
  pending = null;
  inFlight = true;
  const started = performance.now();
  try {
    const response = await fetch("/api/decode", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({z: [z]})});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error);
    $("decoded").src = body.images[0];
    $("z").textContent = "z = [" + z.map((v) => v.toFixed(2)).join(", ") + "]";
    $("status").textContent = `decoded in ${(performance.now() - started).toFixed(0)} ms`;
  } catch (error) {
    $("status").textContent = "error: " + error.message;
  } finally {
    inFlight = false;
    decodeNow();
  }
}

function show(z) {
  pending = z;
  decodeNow();
}

// Every path that changes z (the plane, a slider, interpolation, attribute editing) comes
// through here, so that every latent slider and the plane's marker show the z being decoded.
function setZ(z) {
  current = z.slice();
  setSliders(current);
  drawPlane(current);
  show(current);
}

// The plane: canvas pixels <-> (u, v) <-> z = origin + u * axes[0] + v * axes[1].
let bounds = null;
function computeBounds() {
  const us = info.points.u, vs = info.points.v;
  const pad = (lo, hi) => [lo - 0.1 * (hi - lo || 1), hi + 0.1 * (hi - lo || 1)];
  const [u0, u1] = pad(Math.min(...us, -2), Math.max(...us, 2));
  const [v0, v1] = pad(Math.min(...vs, -2), Math.max(...vs, 2));
  bounds = {u0, u1, v0, v1};
}
function toCanvas(u, v, canvas) {
  return [(u - bounds.u0) / (bounds.u1 - bounds.u0) * canvas.width, (1 - (v - bounds.v0) / (bounds.v1 - bounds.v0)) * canvas.height];
}
function fromCanvas(x, y, canvas) {
  return [bounds.u0 + x / canvas.width * (bounds.u1 - bounds.u0), bounds.v0 + (1 - y / canvas.height) * (bounds.v1 - bounds.v0)];
}
function planeZ(u, v) {
  const {origin, axes} = info.plane;
  return origin.map((o, i) => o + u * axes[0][i] + v * axes[1][i]);
}
// z's coordinates on the plane (the axes are orthonormal), and whether z lies on it.
function planeUV(z) {
  const {origin, axes} = info.plane;
  const dot = (axis) => z.reduce((sum, value, i) => sum + (value - origin[i]) * axis[i], 0);
  const u = dot(axes[0]), v = dot(axes[1]);
  const onPlane = planeZ(u, v).every((value, i) => Math.abs(value - z[i]) < 1e-6);
  return [u, v, onPlane];
}

// What the plane is coloured by: the picked attribute where the test images carry it (CelebA's), else the class.
function colouring() {
  const name = $("edit-vector").value, has = info.points.attributes[name];
  if (has) return {label: has, names: [`not ${name}`, name], by: `the picked attribute (${name})`};
  return {label: info.points.label, names: info.class_names, by: "class"};
}
function drawLegend() {
  const {names, by} = colouring();
  $("legend").innerHTML = names.map((name, i) => `<span><i style="background:${COLOURS[i % COLOURS.length]}"></i>${name}</span>`).join("");
  $("plane-hint").textContent = `Test images' mu, coloured by ${by}. Move or drag the pointer: the image is decoded from that z.`;
}

// The scatter, and a marker at z (its projection, dashed, when z is off the plane).
function drawPlane(z) {
  const canvas = $("plane"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const {u, v} = info.points, {label} = colouring();
  for (let i = 0; i < u.length; i++) {
    const [x, y] = toCanvas(u[i], v[i], canvas);
    ctx.fillStyle = COLOURS[label[i] % COLOURS.length];
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  }
  ctx.fillStyle = "#333";
  ctx.font = "12px sans-serif";
  ctx.fillText(info.plane.names[0] + " →", canvas.width - 70, canvas.height - 6);
  ctx.fillText("↑ " + info.plane.names[1], 4, 14);
  if (z) {
    const [u, v, onPlane] = planeUV(z);
    const [x, y] = toCanvas(u, v, canvas);
    canvas.dataset.marker = JSON.stringify([u, v]);
    ctx.strokeStyle = "#000";
    ctx.setLineDash(onPlane ? [] : [3, 3]);
    ctx.beginPath();
    ctx.arc(Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height), 6, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.setLineDash([]);
  }
}

function onPointer(event) {
  const canvas = $("plane"), rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width, y = (event.clientY - rect.top) * canvas.height / rect.height;
  const [u, v] = fromCanvas(x, y, canvas);
  setZ(planeZ(u, v));
}

function buildSliders() {
  const box = $("sliders");
  for (const dim of info.dims_by_kl) {
    const label = document.createElement("label");
    label.innerHTML = `z[${dim}] <input type="range" min="-3" max="3" step="0.01" value="0" data-dim="${dim}"> <output>0.00</output> <small>KL ${info.kl_per_dim[dim].toFixed(2)}</small>`;
    box.appendChild(label);
  }
  box.addEventListener("input", (event) => {
    // Only the moved dim changes: the others keep the current z (which may lie beyond a slider's range).
    const z = current.slice();
    z[Number(event.target.dataset.dim)] = Number(event.target.value);
    setZ(z);
  });
}
// Each slider at its dim of z; its number shows the value itself, marked when beyond the slider's range.
function setSliders(z) {
  $("sliders").querySelectorAll("input").forEach((input) => {
    const value = z[Number(input.dataset.dim)];
    input.value = value;
    const output = input.nextElementSibling;
    output.textContent = value.toFixed(2);
    output.classList.toggle("beyond", value < Number(input.min) || value > Number(input.max));
    output.title = output.classList.contains("beyond") ? `beyond the slider's range ${input.min} to ${input.max}` : "";
  });
}

function fillImageSelect(select, count, selected) {
  for (let i = 0; i < count; i++) {
    const option = document.createElement("option");
    option.value = i;
    option.textContent = info.class_names.length > 1 ? `test #${i} (${info.class_names[info.points.label[i]]})` : `test #${i}`;
    select.appendChild(option);
  }
  select.value = selected;
}

function interpolationZ() {
  const a = info.test_mu[$("interp-a").value], b = info.test_mu[$("interp-b").value], t = Number($("interp-t").value);
  $("interp-t-value").textContent = t.toFixed(2);
  return a.map((value, i) => (1 - t) * value + t * b[i]);
}
function editZ() {
  const mu = info.test_mu[$("edit-image").value], s = info.attributes[$("edit-vector").value], k = Number($("edit-k").value);
  $("edit-k-value").textContent = k.toFixed(2);
  return s ? mu.map((value, i) => value + k * s[i]) : mu.slice();
}

// Images at a whole multiple of their size (pixelated stays crisp): the run's shape, gray or colour, any size.
function sizeImage(img, target) {
  const [, height, width] = info.image_shape, scale = Math.max(1, Math.floor(target / Math.max(height, width)));
  img.width = width * scale;
  img.height = height * scale;
}

function fillAttributes() {
  const names = Object.keys(info.attributes), select = $("edit-vector");
  for (const name of names) {
    const option = document.createElement("option");
    const [withIt, without] = info.attribute_counts[name];
    option.value = name;
    option.textContent = `${name} (${withIt} with, ${without} without)`;
    select.appendChild(option);
  }
  if (info.default_attribute !== null) select.value = info.default_attribute;
  for (const id of ["edit-vector", "edit-k"]) $(id).disabled = names.length === 0;
  $("edit-source").textContent = names.length
    ? `${names.length} attribute vectors from the ${info.attribute_split} split (${info.attribute_images} images), computed once at start-up.`
    : "No attribute vectors: the run's validation split has no group with images both with and without it.";
}

async function start() {
  const response = await fetch("/api/info");
  info = await response.json();
  computeBounds();
  fillAttributes();
  drawLegend();
  drawPlane(null);
  sizeImage($("decoded"), 224);
  for (const id of ["thumb-a", "thumb-b", "edit-thumb"]) sizeImage($(id), 64);
  const canvas = $("plane");
  canvas.addEventListener("pointermove", onPointer);
  canvas.addEventListener("pointerdown", onPointer);
  buildSliders();
  const count = Math.min(50, info.test_mu.length);
  fillImageSelect($("interp-a"), count, 0);
  fillImageSelect($("interp-b"), count, Math.min(1, count - 1));
  fillImageSelect($("edit-image"), count, 0);
  const thumbs = () => { $("thumb-a").src = `/api/test_image/${$("interp-a").value}.png`; $("thumb-b").src = `/api/test_image/${$("interp-b").value}.png`; };
  const editThumb = () => { $("edit-thumb").src = `/api/test_image/${$("edit-image").value}.png`; };
  for (const id of ["interp-a", "interp-b", "interp-t"]) $(id).addEventListener("input", () => { thumbs(); setZ(interpolationZ()); });
  for (const id of ["edit-image", "edit-vector", "edit-k"]) $(id).addEventListener("input", () => { editThumb(); drawLegend(); setZ(editZ()); });
  thumbs();
  editThumb();
  setZ(planeZ(0, 0));
  const [channels, height, width] = info.image_shape;
  $("status").textContent = `latent_dim ${info.latent_dim}, ${info.points.u.length} test images, ${width}x${height} ${channels === 3 ? "RGB" : "gray"}`;
}

start().catch((error) => { $("status").textContent = "error: " + error.message; });
