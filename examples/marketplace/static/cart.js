// The marketplace's own script: the module's Content-Security-Policy must not reach this page.
document.getElementById("add").addEventListener("click", async (event) => {
  const response = await fetch("/api/cart", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({sku: event.target.dataset.sku}),
  });
  document.getElementById("cart").textContent = `${(await response.json()).items} in cart`;
});
